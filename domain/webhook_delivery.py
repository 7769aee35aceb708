"""What an answer to a webhook delivery means, and when to try again (SPEC section 8).

Pure rules of the answer, the number of failures so far and the wall-clock moment: deliveries
happen in the real world, so their schedule follows the wall clock, never the ledger's test clock.
- only a 2xx answer delivers the message;
- 410 Gone: the receiver is gone for good, the endpoint is disabled;
- anything else (another status, a timeout, a refused connection) is retried after 5 s, 5 min,
  30 min, 2 h, 5 h, 10 h, 14 h, 20 h and 24 h, each delay with up to 10% jitter either way so that
  receivers coming back are not hit by every sender at the same instant; the tenth failure ends it;
- 429 and 503 with `Retry-After` (seconds or an HTTP date) are retried when the receiver asked,
  at most 24 h later; they still count as failures, so no receiver can keep a message forever."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

RETRY_DELAYS = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=14),
    timedelta(hours=20),
    timedelta(hours=24),
)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
JITTER = 0.1
MAX_RETRY_AFTER = timedelta(hours=24)
HONOURS_RETRY_AFTER = (429, 503)

SUCCEEDED, RETRY, FAILED, GONE = "succeeded", "retry", "failed", "gone"


@dataclass(frozen=True)
class Verdict:
    outcome: str  # succeeded, retry, failed (no attempt left) or gone (410: disable the endpoint)
    next_attempt_at: datetime | None = None


def retry_delay(failures: int, jitter: float) -> timedelta:
    """The wait after the `failures`-th failure in a row (1-based); `jitter` in [-1, 1] spreads it
    by up to JITTER of the delay either way."""
    if not 1 <= failures <= len(RETRY_DELAYS):
        raise ValueError(f"no retry after failure {failures}")
    if not -1 <= jitter <= 1:
        raise ValueError("jitter is within [-1, 1]")
    return RETRY_DELAYS[failures - 1] * (1 + JITTER * jitter)


def retry_after(header: str | None, now: datetime) -> timedelta | None:
    """The wait a `Retry-After` header asks for (delay-seconds or an HTTP date), within
    [0, 24 h]; None when absent or unreadable (the schedule applies then)."""
    if header is None:
        return None
    value = header.strip()
    if value.isdigit():
        wait = timedelta(seconds=int(value)) if len(value) <= 9 else MAX_RETRY_AFTER
    else:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:
            return None  # RFC 9110 dates are GMT; one without a zone is not one
        wait = moment - now
    return min(max(wait, timedelta(0)), MAX_RETRY_AFTER)


def judge(
    status_code: int | None,
    retry_after_header: str | None,
    *,
    failures_before: int,
    now: datetime,
    jitter: float,
) -> Verdict:
    """What an attempt's answer means. `status_code` None: no answer (timeout, refused, reset);
    `failures_before`: failures in a row before this attempt since the schedule began."""
    if status_code is not None and 200 <= status_code <= 299:
        return Verdict(SUCCEEDED)
    if status_code == 410:
        return Verdict(GONE)
    failures = failures_before + 1
    if failures >= MAX_ATTEMPTS:
        return Verdict(FAILED)
    wait = retry_delay(failures, jitter)
    if status_code in HONOURS_RETRY_AFTER:
        asked = retry_after(retry_after_header, now)
        if asked is not None:
            wait = asked
    return Verdict(RETRY, now + wait)
