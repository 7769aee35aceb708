"""Tables of the core read models and the projectors' checkpoints. Disposable: `ledger replay`
rebuilds them from the event store."""

from __future__ import annotations

import hashlib
from typing import Any

from psycopg import Connection, sql

from projections.journal import JOURNAL_DDL
from projections.mrr import MRR_DDL, MRR_TABLES
from projections.receivables import RECEIVABLES_DDL, RECEIVABLES_TABLES
from projections.usage import USAGE_DDL, USAGE_TABLES

CORE_TABLES = (
    "rm_plans",
    "rm_customers",
    "rm_subscriptions",
    "rm_invoices",
    "rm_payments",
    "rm_alerts",
    "rm_coupons",
    "rm_credit_notes",
    "rm_customer_balances",
)
# The metrics of SPEC section 4, kept by the same projector (read-your-writes waits on one name).
METRICS_TABLES = MRR_TABLES + RECEIVABLES_TABLES + USAGE_TABLES
METRICS_DDL = MRR_DDL + RECEIVABLES_DDL + USAGE_DDL

# Where each projector is, per Kafka partition (partition -1: fed from the store directly).
# `position` is the last event applied from that partition; `watermark` the global position up
# to which every event of that partition has been applied. A read model has applied position P
# when the lowest watermark of its projector's partitions is at least P.
CHECKPOINT_DDL = """
CREATE TABLE IF NOT EXISTS projection_partitions (
    name text NOT NULL,
    partition int NOT NULL,
    position bigint NOT NULL DEFAULT 0,
    watermark bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, partition)
);
-- Where the projector stopped: the event of that partition it cannot apply, and why.
ALTER TABLE projection_partitions
    ADD COLUMN IF NOT EXISTS failed_position bigint,
    ADD COLUMN IF NOT EXISTS failed_event_type text,
    ADD COLUMN IF NOT EXISTS failed_error text,
    ADD COLUMN IF NOT EXISTS failed_at timestamptz,
    ADD COLUMN IF NOT EXISTS failed_attempts int NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS relay_state (
    topic text PRIMARY KEY,
    partitions int NOT NULL,
    position bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- The id of the topic the relay filled (a new id: a new topic, to be filled from position 1).
ALTER TABLE relay_state ADD COLUMN IF NOT EXISTS topic_id text;
CREATE TABLE IF NOT EXISTS relay_partitions (
    topic text NOT NULL,
    partition int NOT NULL,
    last_position bigint NOT NULL DEFAULT 0,
    acked_offset bigint NOT NULL DEFAULT -1,
    PRIMARY KEY (topic, partition)
);
CREATE TABLE IF NOT EXISTS api_keys (
    id uuid PRIMARY KEY, name text NOT NULL, role text NOT NULL, customer_id uuid,
    key_hash text NOT NULL UNIQUE, created_at timestamptz NOT NULL DEFAULT now(),
    created_by text, revoked_at timestamptz
);
"""

READ_MODEL_DDL = """
CREATE TABLE IF NOT EXISTS rm_plans (
    id uuid PRIMARY KEY, seq bigint NOT NULL, code text NOT NULL UNIQUE, name text NOT NULL,
    currency text NOT NULL, amount bigint NOT NULL, interval text NOT NULL,
    interval_count int NOT NULL, trial_days int NOT NULL, quotas jsonb NOT NULL,
    usage_prices jsonb NOT NULL, status text NOT NULL, version int NOT NULL,
    created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS rm_customers (
    id uuid PRIMARY KEY, seq bigint NOT NULL, external_id text NOT NULL UNIQUE,
    email text NOT NULL, name text NOT NULL, currency text NOT NULL, tax_rate_bps int NOT NULL,
    metadata jsonb NOT NULL, archived boolean NOT NULL DEFAULT false,
    ever_had_mrr boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
    tax_exempt text NOT NULL DEFAULT 'none', vat_id text, address jsonb,
    net_terms_days int NOT NULL DEFAULT 30, discount jsonb
);
ALTER TABLE rm_customers ADD COLUMN IF NOT EXISTS tax_exempt text NOT NULL DEFAULT 'none',
    ADD COLUMN IF NOT EXISTS vat_id text, ADD COLUMN IF NOT EXISTS address jsonb,
    ADD COLUMN IF NOT EXISTS net_terms_days int NOT NULL DEFAULT 30,
    ADD COLUMN IF NOT EXISTS discount jsonb,
    ADD COLUMN IF NOT EXISTS collection_method text NOT NULL DEFAULT 'send_invoice';
CREATE TABLE IF NOT EXISTS rm_customer_balances (
    customer_id uuid NOT NULL, currency text NOT NULL, amount bigint NOT NULL,
    PRIMARY KEY (customer_id, currency)
);
CREATE TABLE IF NOT EXISTS rm_coupons (
    id uuid PRIMARY KEY, seq bigint NOT NULL, code text NOT NULL UNIQUE, name text NOT NULL,
    percent_off text, amount_off bigint, currency text, duration text NOT NULL,
    duration_in_periods int, created_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS rm_credit_notes (
    id uuid PRIMARY KEY, seq bigint NOT NULL, number text NOT NULL UNIQUE, invoice_id uuid NOT NULL,
    customer_id uuid NOT NULL, currency text NOT NULL, reason text NOT NULL, amount bigint NOT NULL,
    lines jsonb NOT NULL, against_remaining bigint NOT NULL, refund_amount bigint NOT NULL,
    credit_amount bigint NOT NULL, memo text, created_at timestamptz NOT NULL, buyer jsonb
);
ALTER TABLE rm_credit_notes ADD COLUMN IF NOT EXISTS buyer jsonb;
CREATE INDEX IF NOT EXISTS rm_credit_notes_customer ON rm_credit_notes (customer_id, seq);
CREATE INDEX IF NOT EXISTS rm_credit_notes_invoice ON rm_credit_notes (invoice_id, seq);
CREATE INDEX IF NOT EXISTS rm_customers_seq ON rm_customers (seq);
CREATE INDEX IF NOT EXISTS rm_customers_currency ON rm_customers (currency);
CREATE TABLE IF NOT EXISTS rm_subscriptions (
    id uuid PRIMARY KEY, seq bigint NOT NULL, customer_id uuid NOT NULL, plan_code text NOT NULL,
    quantity int NOT NULL, status text NOT NULL, amount bigint NOT NULL, currency text NOT NULL,
    interval text NOT NULL, interval_count int NOT NULL, mrr bigint NOT NULL,
    current_period_start timestamptz NOT NULL, current_period_end timestamptz NOT NULL,
    trial_end timestamptz, cancel_at_period_end boolean NOT NULL DEFAULT false,
    canceled_at timestamptz, ended_at timestamptz, started_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL, cancel_at timestamptz, discount jsonb,
    billed_by text NOT NULL DEFAULT 'ledger'
);
ALTER TABLE rm_subscriptions ADD COLUMN IF NOT EXISTS cancel_at timestamptz,
    ADD COLUMN IF NOT EXISTS discount jsonb,
    ADD COLUMN IF NOT EXISTS billed_by text NOT NULL DEFAULT 'ledger',
    ADD COLUMN IF NOT EXISTS items jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN IF NOT EXISTS items_mrr bigint NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS rm_subscriptions_customer ON rm_subscriptions (customer_id, seq);
CREATE INDEX IF NOT EXISTS rm_subscriptions_status ON rm_subscriptions (status, seq);
CREATE INDEX IF NOT EXISTS rm_subscriptions_seq ON rm_subscriptions (seq);
-- The summary's counts per currency and status read this index alone.
CREATE INDEX IF NOT EXISTS rm_subscriptions_currency_status ON rm_subscriptions (currency, status);
CREATE TABLE IF NOT EXISTS rm_invoices (
    id uuid PRIMARY KEY, seq bigint NOT NULL, customer_id uuid NOT NULL, subscription_id uuid,
    number text, status text NOT NULL, currency text NOT NULL, lines jsonb NOT NULL,
    subtotal bigint NOT NULL, discount bigint NOT NULL, tax bigint NOT NULL, total bigint NOT NULL,
    amount_paid bigint NOT NULL, amount_remaining bigint NOT NULL, due_date date,
    created_at timestamptz NOT NULL, finalized_at timestamptz, updated_at timestamptz NOT NULL,
    period_start timestamptz, period_end timestamptz, billing_reason text NOT NULL DEFAULT 'manual',
    tax_rate_bps int NOT NULL DEFAULT 0, tax_exempt text NOT NULL DEFAULT 'none', coupon jsonb,
    balance_applied bigint NOT NULL DEFAULT 0, amount_credited bigint NOT NULL DEFAULT 0,
    finalize_at timestamptz, buyer jsonb
);
ALTER TABLE rm_invoices ADD COLUMN IF NOT EXISTS period_start timestamptz,
    ADD COLUMN IF NOT EXISTS period_end timestamptz,
    ADD COLUMN IF NOT EXISTS billing_reason text NOT NULL DEFAULT 'manual',
    ADD COLUMN IF NOT EXISTS tax_rate_bps int NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS tax_exempt text NOT NULL DEFAULT 'none',
    ADD COLUMN IF NOT EXISTS coupon jsonb,
    ADD COLUMN IF NOT EXISTS balance_applied bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS amount_credited bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS finalize_at timestamptz,
    ADD COLUMN IF NOT EXISTS collection_method text,
    ADD COLUMN IF NOT EXISTS payment_failures int NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS dunning jsonb,
    ADD COLUMN IF NOT EXISTS buyer jsonb;
CREATE INDEX IF NOT EXISTS rm_invoices_subscription ON rm_invoices (subscription_id, seq);
CREATE INDEX IF NOT EXISTS rm_invoices_customer ON rm_invoices (customer_id, seq);
CREATE INDEX IF NOT EXISTS rm_invoices_status ON rm_invoices (status, seq);
CREATE INDEX IF NOT EXISTS rm_invoices_seq ON rm_invoices (seq);
CREATE TABLE IF NOT EXISTS rm_payments (
    id uuid PRIMARY KEY, seq bigint NOT NULL, customer_id uuid NOT NULL, invoice_id uuid,
    amount bigint NOT NULL, currency text NOT NULL, status text NOT NULL, attempt int NOT NULL,
    failure_code text, failure_message text, amount_refunded bigint NOT NULL DEFAULT 0,
    provider_reference text, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL
);
ALTER TABLE rm_payments ADD COLUMN IF NOT EXISTS method text NOT NULL DEFAULT 'manual',
    ADD COLUMN IF NOT EXISTS external_payment_id text, ADD COLUMN IF NOT EXISTS payment_url text;
CREATE INDEX IF NOT EXISTS rm_payments_customer ON rm_payments (customer_id, seq);
CREATE INDEX IF NOT EXISTS rm_payments_backend_pending ON rm_payments (seq)
    WHERE method = 'backend' AND status = 'pending';
CREATE INDEX IF NOT EXISTS rm_payments_invoice ON rm_payments (invoice_id, seq);
CREATE INDEX IF NOT EXISTS rm_payments_status ON rm_payments (status, seq);
CREATE INDEX IF NOT EXISTS rm_payments_seq ON rm_payments (seq);
CREATE INDEX IF NOT EXISTS rm_payments_currency_status ON rm_payments (currency, status);
CREATE TABLE IF NOT EXISTS rm_alerts (
    id uuid PRIMARY KEY, seq bigint NOT NULL, type text NOT NULL, severity text NOT NULL,
    status text NOT NULL, customer_id uuid, subject text NOT NULL, message text NOT NULL,
    raised_at timestamptz NOT NULL, resolved_at timestamptz, note text
);
CREATE INDEX IF NOT EXISTS rm_alerts_status ON rm_alerts (status, seq);
CREATE INDEX IF NOT EXISTS rm_alerts_seq ON rm_alerts (seq);
"""


SCHEMA_MARKER = (
    "ledger read side "
    + hashlib.sha256(
        "\n".join((CHECKPOINT_DDL, READ_MODEL_DDL, METRICS_DDL, JOURNAL_DDL)).encode()
    ).hexdigest()
)


def create_schema(conn: Connection[Any]) -> None:
    """Create or bring up to date the read side's tables, unless they are already as this DDL
    makes them (its digest is kept as the checkpoint table's comment): every process runs this at
    start, and `ALTER TABLE ... ADD COLUMN IF NOT EXISTS` takes the table's strongest lock even
    when there is nothing to add, stalling the projectors' writes (and the reads queued behind
    the lock request) of a `ledger up` already running."""
    with conn.transaction():
        # Serialise concurrent start-ups creating the same tables.
        conn.execute("SELECT pg_advisory_xact_lock(7429001)")
        row = conn.execute(
            "SELECT obj_description(to_regclass('projection_partitions'), 'pg_class')"
        ).fetchone()
        if row is not None and _first(row) == SCHEMA_MARKER:
            return
        conn.execute(CHECKPOINT_DDL)
        conn.execute(READ_MODEL_DDL)
        conn.execute(METRICS_DDL)
        conn.execute(JOURNAL_DDL)
        conn.execute(
            sql.SQL("COMMENT ON TABLE projection_partitions IS {}").format(sql.Literal(SCHEMA_MARKER))
        )


def _first(row: Any) -> Any:
    """The first column of a row, whatever the connection's row factory."""
    return next(iter(row.values())) if isinstance(row, dict) else row[0]


def create_read_models(conn: Connection[Any]) -> None:
    """The read-model tables in the first schema of the search path (replay builds a fresh set)."""
    conn.execute(READ_MODEL_DDL)
    conn.execute(METRICS_DDL)
    conn.execute(JOURNAL_DDL)
