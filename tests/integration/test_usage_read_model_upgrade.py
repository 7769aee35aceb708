"""A ledger whose usage read models were built before quotas could group (SPEC 10) is upgraded in
place at start-up: the period rows gain their group (""), a key that includes it, and the moment
of their last usage, so the inactivity check does not mistake them for customers without usage."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql

from infra.settings import DatabaseAddress
from projections.usage import USAGE_DDL

BEFORE_GROUPS = """
CREATE TABLE rm_usage_records (
    record_id uuid PRIMARY KEY, position bigint NOT NULL, customer_id uuid NOT NULL,
    metric text NOT NULL, occurred_at timestamptz NOT NULL, value numeric NOT NULL
);
CREATE TABLE rm_usage_periods (
    customer_id uuid NOT NULL, metric text NOT NULL, period_start timestamptz NOT NULL,
    period_end timestamptz NOT NULL, subscription_id uuid, records int NOT NULL,
    used_sum numeric NOT NULL, used_max numeric NOT NULL, used_last numeric NOT NULL,
    PRIMARY KEY (customer_id, metric, period_start)
);
INSERT INTO rm_usage_records VALUES
    ('00000000-0000-0000-0000-000000000011', 1, '00000000-0000-0000-0000-000000000001', 'calls',
     '2025-01-05', 2),
    ('00000000-0000-0000-0000-000000000012', 2, '00000000-0000-0000-0000-000000000001', 'calls',
     '2025-01-09', 3);
INSERT INTO rm_usage_periods VALUES
    ('00000000-0000-0000-0000-000000000001', 'calls', '2025-01-01', '2025-02-01', NULL, 2, 5, 3, 3);
"""


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(DatabaseAddress(database_url).conninfo(), autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        connection.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        try:
            yield connection
        finally:
            connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def test_period_rows_written_before_groups_gain_the_empty_group_a_new_key_and_their_last_usage(
    conn: psycopg.Connection[Any],
) -> None:
    conn.execute(BEFORE_GROUPS)
    conn.execute(USAGE_DDL)
    conn.execute(USAGE_DDL)  # every start runs it: the second time changes nothing
    key: Any = conn.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'rm_usage_periods'::regclass AND contype = 'p'"
    ).fetchall()
    assert key == [("PRIMARY KEY (customer_id, metric, period_start, grp)",)]
    rows = conn.execute("SELECT grp, used_sum, last_at FROM rm_usage_periods").fetchall()
    assert rows == [("", 5, datetime(2025, 1, 9, tzinfo=UTC))]
    # A second group of the same period now has a row of its own.
    conn.execute(
        "INSERT INTO rm_usage_periods VALUES ('00000000-0000-0000-0000-000000000001', 'calls', '2025-01-01',"
        " '2025-02-01', NULL, 1, 1, 1, 1, 'alpha', '2025-01-03')"
    )
