"""The views analysts query, over the raw copies in DuckDB's `raw` schema.

Raw tables keep the PostgreSQL names (`raw.events`, `raw.rm_customers`...); views give them the
names of the product (`events`, `customers`...) and derive what the log holds but no read-model
table does (`usage`, the running MRR of `mrr_daily`). A view whose source table was not copied
(the MRR tables before their projector exists) is not created."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class View:
    name: str
    sources: tuple[str, ...]  # raw tables it reads
    select: str


EVENTS = View(
    "events",
    ("events",),
    "SELECT position, stream_id, version, type, occurred_at, recorded_at, customer_id, source, actor,"
    " correlation_id, causation_id, reason, schema_version, payload FROM raw.events",
)

# One row per usage record (a `UsageRecord` stream). A correction replaces the value of the
# record it corrects (the latest correction wins, by stream version); the record keeps its
# occurred_at, so it counts in the period it was measured in. Values are exact decimals kept as
# strings in the log: `value` is a DECIMAL(38, 12) for arithmetic (NULL past 26 integer digits)
# and `value_text` the exact text.
USAGE = View(
    "usage",
    ("events",),
    """
WITH recorded AS (
    SELECT stream_id, customer_id, occurred_at, recorded_at, position, payload
    FROM raw.events WHERE type = 'UsageRecord.Recorded'
), corrections AS (
    SELECT stream_id, arg_max(payload->>'value', version) AS value, count(*) AS corrections
    FROM raw.events WHERE type = 'UsageRecord.Corrected' GROUP BY stream_id
)
SELECT
    r.stream_id AS record_id,
    r.customer_id,
    r.payload->>'metric' AS metric,
    TRY_CAST(coalesce(c.value, r.payload->>'value') AS DECIMAL(38, 12)) AS value,
    coalesce(c.value, r.payload->>'value') AS value_text,
    r.occurred_at,
    r.recorded_at,
    coalesce(c.corrections, 0) AS corrections,
    r.payload->'properties' AS properties,
    r.payload->>'source' AS sender,
    r.payload->>'idempotency_key' AS idempotency_key,
    r.position
FROM recorded r LEFT JOIN corrections c USING (stream_id)
""",
)


def _read_model(name: str, table: str) -> View:
    return View(name, (table,), f"SELECT * FROM raw.{table}")


# One row per currency and day, from the currency's first movement to today (UTC), like
# GET /v1/metrics/mrr, so `WHERE date = D` finds a quiet day too:
# mrr(D) = mrr(D-1) + new + expansion + reactivation - contraction - churn (SPEC section 4).
MRR_DAILY = View(
    "mrr_daily",
    ("rm_mrr_daily",),
    """
WITH bounds AS (
    SELECT currency, min(day) AS first_day, greatest(max(day), current_date) AS last_day
    FROM raw.rm_mrr_daily GROUP BY currency
), days AS (
    SELECT b.currency, CAST(unnest(generate_series(b.first_day, b.last_day, INTERVAL 1 DAY)) AS DATE) AS day
    FROM bounds b
)
SELECT
    d.day AS date,
    d.currency,
    CAST(sum(coalesce(m.new, 0) + coalesce(m.expansion, 0) + coalesce(m.reactivation, 0)
             - coalesce(m.contraction, 0) - coalesce(m.churn, 0)) OVER (
        PARTITION BY d.currency ORDER BY d.day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
    ) AS BIGINT) AS mrr,
    coalesce(m.new, 0) AS new,
    coalesce(m.expansion, 0) AS expansion,
    coalesce(m.contraction, 0) AS contraction,
    coalesce(m.churn, 0) AS churn,
    coalesce(m.reactivation, 0) AS reactivation
FROM days d LEFT JOIN raw.rm_mrr_daily m ON m.currency = d.currency AND m.day = d.day
""",
)

VIEWS = (
    EVENTS,
    USAGE,
    _read_model("plans", "rm_plans"),
    _read_model("customers", "rm_customers"),
    _read_model("subscriptions", "rm_subscriptions"),
    _read_model("invoices", "rm_invoices"),
    _read_model("payments", "rm_payments"),
    _read_model("alerts", "rm_alerts"),
    MRR_DAILY,
    _read_model("mrr_movements", "rm_mrr_movements"),
)


def views_over(raw_tables: Iterable[str]) -> list[View]:
    """The views whose sources are all among `raw_tables`."""
    present = set(raw_tables)
    return [view for view in VIEWS if present.issuperset(view.sources)]
