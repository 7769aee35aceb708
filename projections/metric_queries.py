"""Read queries over the metrics read models (SPEC section 4). Every function reads only
rm_* tables through the connection it is given, so the same code answers from the live read
models or from a snapshot rebuilt as the ledger knew it at some moment (`known_at`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from psycopg import Connection

from domain.errors import InvalidValue
from domain.metrics import AGING_BUCKETS, MOVEMENT_KINDS, quota_state, rate
from projections.queries import decode_token, encode_token

MAX_SERIES_DAYS = 3700


def end_of(day: date) -> datetime:
    """The last instant of a UTC day: what "as of the end of D" reads."""
    return datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC) - timedelta(microseconds=1)


# The customers' currencies by skipping through their index, one probe per currency, rather
# than reading every customer (a dashboard asks for them on every screen).
_CUSTOMER_CURRENCIES = """
WITH RECURSIVE found AS (
  (SELECT currency FROM rm_customers ORDER BY currency LIMIT 1)
  UNION ALL
  SELECT (SELECT c.currency FROM rm_customers c WHERE c.currency > found.currency ORDER BY c.currency LIMIT 1)
  FROM found WHERE found.currency IS NOT NULL
)
SELECT currency FROM found WHERE currency IS NOT NULL UNION SELECT currency FROM rm_plans ORDER BY 1
"""


def currencies(conn: Connection[Any]) -> list[str]:
    rows = conn.execute(_CUSTOMER_CURRENCIES).fetchall()
    return [r["currency"] for r in rows]


def currencies_by_mrr(conn: Connection[Any], day: date) -> list[dict[str, Any]]:
    """Every currency the ledger has figures in, with its MRR at the end of `day` and the first
    day of its MRR history, the largest MRR first (ties by code): what a dashboard shows by
    default, and where "all" of its history starts."""
    found = {
        r["currency"]: r
        for r in conn.execute(
            "SELECT currency, sum(new + expansion + reactivation - contraction - churn) AS mrr,"
            " min(day) AS first_day FROM rm_mrr_daily WHERE day <= %s GROUP BY currency",
            (day,),
        ).fetchall()
    }
    rows = [
        {
            "currency": code,
            "mrr": int(found[code]["mrr"]) if code in found else 0,
            "first_day": found[code]["first_day"] if code in found else None,
        }
        for code in currencies(conn)
    ]
    return sorted(rows, key=lambda r: (-r["mrr"], r["currency"]))


# ------------------------------------------------------------------------------------ MRR


def mrr_at(conn: Connection[Any], currency: str, day: date) -> int:
    row: Any = conn.execute(
        "SELECT coalesce(sum(new + expansion + reactivation - contraction - churn), 0) AS mrr"
        " FROM rm_mrr_daily WHERE currency = %s AND day <= %s",
        (currency, day),
    ).fetchone()
    return int(row["mrr"])


def mrr_series(conn: Connection[Any], currency: str, first: date, last: date) -> list[dict[str, Any]]:
    """One row per day of [first, last]: MRR at the end of the day and the day's movements."""
    if last < first:
        raise InvalidValue("'to' is before 'from'", field="to")
    if (last - first).days >= MAX_SERIES_DAYS:
        raise InvalidValue(f"at most {MAX_SERIES_DAYS} days per request", field="to")
    mrr = mrr_at(conn, currency, first - timedelta(days=1))
    stored = {
        r["day"]: r
        for r in conn.execute(
            "SELECT day, new, expansion, contraction, churn, reactivation FROM rm_mrr_daily"
            " WHERE currency = %s AND day BETWEEN %s AND %s ORDER BY day",
            (currency, first, last),
        ).fetchall()
    }
    rows: list[dict[str, Any]] = []
    day = first
    while day <= last:
        moved = stored.get(day)
        values: dict[str, int] = {k: int(moved[k]) if moved else 0 for k in MOVEMENT_KINDS}
        mrr += values["new"] + values["expansion"] + values["reactivation"]
        mrr -= values["contraction"] + values["churn"]
        rows.append({"date": day, "currency": currency, "mrr": mrr, **values})
        day += timedelta(days=1)
    return rows


@dataclass(frozen=True)
class MovementPage:
    totals: dict[str, int]
    items: list[dict[str, Any]]
    next_cursor: str | None


def mrr_movements(
    conn: Connection[Any], currency: str, day: date, kind: str | None, cursor: str | None, limit: int
) -> MovementPage:
    """The customers behind each movement of a day (drill-down), paginated by customer."""
    totals: dict[str, int] = dict.fromkeys(MOVEMENT_KINDS, 0)
    for r in conn.execute(
        "SELECT kind, sum(amount) AS total FROM rm_mrr_movements WHERE currency = %s AND day = %s"
        " GROUP BY kind",
        (currency, day),
    ).fetchall():
        totals[r["kind"]] = int(r["total"])
    after = _decode_uuid_cursor(cursor)
    rows = conn.execute(
        "SELECT m.customer_id, c.name AS customer_name, m.kind, m.amount, m.mrr_before, m.mrr_after"
        " FROM rm_mrr_movements m LEFT JOIN rm_customers c ON c.id = m.customer_id"
        " WHERE m.currency = %(currency)s AND m.day = %(day)s AND m.customer_id > %(after)s"
        " AND (%(kind)s::text IS NULL OR m.kind = %(kind)s) ORDER BY m.customer_id LIMIT %(limit)s",
        {"currency": currency, "day": day, "after": after, "kind": kind, "limit": limit + 1},
    ).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    return MovementPage(totals, rows, _encode_uuid_cursor(rows[-1]["customer_id"]) if more else None)


def _encode_uuid_cursor(value: UUID) -> str:
    return encode_token("id", str(value))


def _decode_uuid_cursor(cursor: str | None) -> UUID:
    if not cursor:
        return UUID(int=0)
    try:
        return UUID(decode_token(cursor, "id"))
    except ValueError:
        raise InvalidValue("the cursor is not one this API returned", field="cursor") from None


# ------------------------------------------------------------------------------------ churn

# Customers paying (MRR above zero) at the end of a day: the running sum of the daily changes.
_PAYING_AT = (
    "SELECT coalesce(sum(paying), 0) FROM rm_mrr_daily WHERE currency = %(currency)s AND day <= %(start)s"
)

# Customers paying at the end of `start` and not at the end of `last`: only a customer with a
# movement in between can differ, and a customer's movements chain, so the first one's
# mrr_before is what they paid at `start` and the last one's mrr_after what they pay at `last`.
_CHURNED_BETWEEN = """
SELECT count(*) FROM (
  SELECT (array_agg(mrr_before ORDER BY day))[1] AS at_start,
         (array_agg(mrr_after ORDER BY day DESC))[1] AS at_end
  FROM rm_mrr_movements WHERE currency = %(currency)s AND day > %(start)s AND day <= %(last)s
  GROUP BY customer_id
) w WHERE at_start > 0 AND at_end = 0
"""


def churn(conn: Connection[Any], currency: str, first: date, end: date) -> dict[str, Any]:
    """The churn fields of SPEC section 4 over [first, end)."""
    if end <= first:
        raise InvalidValue("'to' must be after 'from' (the window is [from, to))", field="to")
    start_day, last_day = first - timedelta(days=1), end - timedelta(days=1)
    counts: Any = conn.execute(
        f"SELECT ({_PAYING_AT}) AS at_start, ({_CHURNED_BETWEEN}) AS churned",
        {"currency": currency, "start": start_day, "last": last_day},
    ).fetchone()
    sums: Any = conn.execute(
        "SELECT coalesce(sum(churn), 0) AS churn, coalesce(sum(contraction), 0) AS contraction,"
        " coalesce(sum(expansion), 0) AS expansion, coalesce(sum(reactivation), 0) AS reactivation"
        " FROM rm_mrr_daily WHERE currency = %s AND day BETWEEN %s AND %s",
        (currency, first, last_day),
    ).fetchone()
    at_start, churned = int(counts["at_start"]), int(counts["churned"])
    mrr_at_start = mrr_at(conn, currency, start_day)
    lost = int(sums["churn"]) + int(sums["contraction"])
    regained = int(sums["expansion"]) + int(sums["reactivation"])
    return {
        "from": first,
        "to": end,
        "currency": currency,
        "customers_at_start": at_start,
        "churned_customers": churned,
        "customer_churn_rate": rate(churned, at_start),
        "mrr_at_start": mrr_at_start,
        "churned_mrr": int(sums["churn"]),
        "contraction_mrr": int(sums["contraction"]),
        "expansion_mrr": int(sums["expansion"]),
        "reactivation_mrr": int(sums["reactivation"]),
        "gross_mrr_churn_rate": rate(lost, mrr_at_start),
        "net_mrr_churn_rate": rate(lost - regained, mrr_at_start),
    }


# ------------------------------------------------------------------------------------ receivables

_BUCKET = """CASE WHEN %(as_of)s::date - due_date <= 0 THEN 'current'
 WHEN %(as_of)s::date - due_date <= 30 THEN '1_30' WHEN %(as_of)s::date - due_date <= 60 THEN '31_60'
 WHEN %(as_of)s::date - due_date <= 90 THEN '61_90' ELSE '90_plus' END"""
_UNPAID_AT = "tstzrange(valid_from, valid_to, '[)') @> %(moment)s::timestamptz"


def receivables(
    conn: Connection[Any],
    as_of: date,
    currency: str | None,
    customer_id: UUID | None,
    cursor: str | None,
    limit: int,
) -> dict[str, Any]:
    params = {
        "as_of": as_of,
        "moment": end_of(as_of),
        "currency": currency,
        "customer": customer_id,
        "after": _decode_uuid_cursor(cursor),
        "limit": limit + 1,
    }
    filters = (
        f"{_UNPAID_AT} AND (%(currency)s::text IS NULL OR currency = %(currency)s)"
        " AND (%(customer)s::uuid IS NULL OR customer_id = %(customer)s)"
    )
    by_currency: dict[str, dict[str, int]] = {}
    for r in conn.execute(
        f"SELECT currency, {_BUCKET} AS bucket, sum(amount_remaining) AS total, count(*) AS n"
        f" FROM rm_receivable_spans WHERE {filters} GROUP BY 1, 2",
        params,
    ).fetchall():
        by_currency.setdefault(r["currency"], dict.fromkeys(AGING_BUCKETS, 0))[r["bucket"]] = int(r["total"])
    rows = conn.execute(
        f"SELECT invoice_id, customer_id, currency, amount_remaining, due_date,"
        f" %(as_of)s::date - due_date AS days_overdue, {_BUCKET} AS bucket"
        f" FROM rm_receivable_spans WHERE {filters} AND invoice_id > %(after)s"
        " ORDER BY invoice_id LIMIT %(limit)s",
        params,
    ).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    shown = currency or (next(iter(by_currency)) if len(by_currency) == 1 else None)
    return {
        "as_of": as_of,
        "currency": shown,
        "totals": by_currency.get(shown, dict.fromkeys(AGING_BUCKETS, 0)) if shown else None,
        "totals_by_currency": by_currency,
        "invoices": rows,
        "next_cursor": _encode_uuid_cursor(rows[-1]["invoice_id"]) if more and rows else None,
    }


def unpaid_total(conn: Connection[Any], currency: str, as_of: date) -> int:
    row: Any = conn.execute(
        f"SELECT coalesce(sum(amount_remaining), 0) AS total FROM rm_receivable_spans"
        f" WHERE {_UNPAID_AT} AND currency = %(currency)s",
        {"moment": end_of(as_of), "currency": currency},
    ).fetchone()
    return int(row["total"])


# ------------------------------------------------------------------------------------ usage quotas

# A quota row per customer, metric, period and group with usage; and, for each quota of the plan
# of a live subscription that does not group, a row for its current period even before any usage
# (used 0), so a quota reads the same through the list as through the entitlement. (A grouped
# quota has no row before usage: its groups are the values its usage names.)
_QUOTA_SELECT = """
SELECT * FROM (
  SELECT u.customer_id, u.metric, u.period_start, u.period_end, u.grp, u.used_sum, u.used_max, u.used_last,
         pl.quotas -> u.metric AS quota
  FROM rm_usage_periods u
  LEFT JOIN LATERAL (
      SELECT s.plan_code FROM rm_subscriptions s
      WHERE s.id = u.subscription_id OR (u.subscription_id IS NULL AND s.customer_id = u.customer_id)
      ORDER BY (s.id = u.subscription_id) DESC, s.seq DESC LIMIT 1
  ) s ON true
  LEFT JOIN rm_plans pl ON pl.code = s.plan_code
  UNION ALL
  (SELECT DISTINCT ON (s.customer_id, q.metric)
          s.customer_id, q.metric, s.current_period_start, s.current_period_end, '', 0, 0, 0,
          pl.quotas -> q.metric
   FROM rm_subscriptions s
   JOIN rm_plans pl ON pl.code = s.plan_code AND pl.quotas <> '{}'::jsonb
   CROSS JOIN LATERAL jsonb_object_keys(pl.quotas) AS q(metric)
   WHERE s.status <> 'canceled' AND NOT pl.quotas -> q.metric ? 'group_by' AND NOT EXISTS (
       SELECT 1 FROM rm_usage_periods x
       WHERE x.customer_id = s.customer_id AND x.metric = q.metric
         AND x.period_start = s.current_period_start)
   ORDER BY s.customer_id, q.metric, s.seq DESC)
) u
"""


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def quota_row(r: dict[str, Any]) -> dict[str, Any]:
    quota = r["quota"] or {}
    aggregation = quota.get("aggregation", "sum")
    used = {"sum": r["used_sum"], "max": r["used_max"], "last": r["used_last"]}.get(
        aggregation, r["used_sum"]
    )
    limit = Decimal(str(quota["limit"])) if quota.get("limit") is not None else None
    percent = (used / limit) if limit else None
    return {
        "customer_id": r["customer_id"],
        "metric": r["metric"],
        "group": r["grp"],
        "group_by": quota.get("group_by"),
        "period_start": r["period_start"],
        "period_end": r["period_end"],
        "used": _number(used),
        "limit": _number(limit) if limit is not None else None,
        "percent": float(round(percent, 6)) if percent is not None else None,
        "state": quota_state(used, limit) if limit is not None else "ok",
        "aggregation": aggregation,
        "enforcement": quota.get("enforcement", "soft"),
    }


def quotas(
    conn: Connection[Any],
    customer_id: UUID | None,
    metric: str | None,
    current_at: datetime | None,
    cursor: str | None,
    limit: int,
    group: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Quota rows per customer, metric, period and group; `current_at` keeps the period
    containing it, `group` the rows of that group."""
    after = decode_quota_cursor(cursor)
    rows = conn.execute(
        f"{_QUOTA_SELECT} WHERE (%(customer)s::uuid IS NULL OR u.customer_id = %(customer)s)"
        " AND (%(metric)s::text IS NULL OR u.metric = %(metric)s)"
        " AND (%(group)s::text IS NULL OR u.grp = %(group)s)"
        " AND (%(at)s::timestamptz IS NULL OR (u.period_start <= %(at)s AND %(at)s < u.period_end))"
        " AND (u.customer_id, u.metric, u.period_start, u.grp) > (%(c)s, %(m)s, %(p)s, %(g)s)"
        " ORDER BY u.customer_id, u.metric, u.period_start, u.grp LIMIT %(limit)s",
        {
            "customer": customer_id,
            "metric": metric,
            "group": group,
            "at": current_at,
            "c": after[0],
            "m": after[1],
            "p": after[2],
            "g": after[3],
            "limit": limit + 1,
        },
    ).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if more and rows else None
    next_cursor = (
        encode_quota_cursor(last["customer_id"], last["metric"], last["period_start"], last["grp"])
        if last
        else None
    )
    return [quota_row(r) for r in rows], next_cursor


def encode_quota_cursor(customer_id: UUID, metric: str, period_start: datetime, group: str = "") -> str:
    # The group first after the fixed-width parts, by its length: a group or a metric may hold "|".
    return encode_token("q", f"{customer_id}|{period_start.isoformat()}|{len(group)}|{group}{metric}")


def decode_quota_cursor(cursor: str | None) -> tuple[UUID, str, datetime, str]:
    if not cursor:
        return UUID(int=0), "", datetime(1, 1, 1, tzinfo=UTC), ""
    try:
        customer, started, length, rest = decode_token(cursor, "q").split("|", 3)
        size = int(length)
        if not 0 <= size <= len(rest):
            raise ValueError(length)
        return UUID(customer), rest[size:], datetime.fromisoformat(started), rest[:size]
    except ValueError:
        raise InvalidValue("the cursor is not one this API returned", field="cursor") from None


def _quota_of(conn: Connection[Any], customer_id: UUID, metric: str) -> dict[str, Any]:
    """The quota on `metric` of the plan of the customer's subscription ({} if none)."""
    plan: Any = conn.execute(
        "SELECT pl.quotas -> %s AS quota FROM rm_subscriptions s"
        " JOIN rm_plans pl ON pl.code = s.plan_code"
        " WHERE s.customer_id = %s ORDER BY (s.status <> 'canceled') DESC, s.seq DESC LIMIT 1",
        (metric, customer_id),
    ).fetchone()
    quota: dict[str, Any] = (plan or {}).get("quota") or {}
    return quota


def entitlement(
    conn: Connection[Any], customer_id: UUID, metric: str, now: datetime, group: str | None = None
) -> dict[str, Any]:
    """Whether the customer may use more of `metric` now: a hard quota refuses once exceeded. A
    quota that groups (SPEC 10) answers for `group` (usage without the property: ""); one that
    does not answers for the customer's whole usage, whatever `group` says."""
    quota = _quota_of(conn, customer_id, metric)
    grp = (group or "") if quota.get("group_by") else ""
    rows, _ = quotas(conn, customer_id, metric, now, None, 1, group=grp)
    if rows:
        row = rows[0]
    else:
        limit_value = quota.get("limit")
        row = {
            "used": 0,
            "limit": limit_value,
            "enforcement": quota.get("enforcement", "soft"),
            "state": "ok" if limit_value is None else quota_state(Decimal(0), Decimal(str(limit_value))),
        }
    limit = row["limit"]
    used = row["used"]
    allowed = not (row["enforcement"] == "hard" and row["state"] == "exceeded")
    return {
        "customer_id": customer_id,
        "metric": metric,
        "group": grp,
        "allowed": allowed,
        "used": used,
        "limit": limit,
        "remaining": max(limit - used, 0) if limit is not None else None,
        "enforcement": row["enforcement"],
    }


# ------------------------------------------------------------------------------------ summary


def summary(conn: Connection[Any], currency: str, today: date) -> dict[str, Any]:
    """The cards of a dashboard in one statement (a round trip each would cost more than the
    reads). The churn rate is customer churn over the 30 days ending today, as `churn` counts it."""
    start, last = today - timedelta(days=30), today
    row: Any = conn.execute(
        "SELECT (SELECT count(*) FROM rm_subscriptions WHERE currency = %(currency)s"
        "        AND status IN ('active', 'past_due')) AS active_subscriptions,"
        " (SELECT count(*) FROM rm_payments WHERE currency = %(currency)s AND status = 'failed')"
        "  AS failed_payments,"
        " (SELECT coalesce(sum(new + expansion + reactivation - contraction - churn), 0) FROM rm_mrr_daily"
        "  WHERE currency = %(currency)s AND day <= %(last)s) AS mrr,"
        f" ({_PAYING_AT}) AS at_start, ({_CHURNED_BETWEEN}) AS churned,"
        f" (SELECT coalesce(sum(amount_remaining), 0) FROM rm_receivable_spans WHERE {_UNPAID_AT}"
        "  AND currency = %(currency)s) AS unpaid_total",
        {"currency": currency, "start": start, "last": last, "moment": end_of(today)},
    ).fetchone()
    return {
        "currency": currency,
        "mrr": int(row["mrr"]),
        "active_subscriptions": int(row["active_subscriptions"]),
        "failed_payments": int(row["failed_payments"]),
        "customer_churn_rate_30d": rate(int(row["churned"]), int(row["at_start"])),
        "unpaid_total": int(row["unpaid_total"]),
    }
