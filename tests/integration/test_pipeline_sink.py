"""The projectors' pipelined statements (projections/pipeline_sink.py) survive losing their
prepared statements on the server: a batch that fails on that is rolled back and the next one
prepares them again, so a projector never stays stuck."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from infra.settings import DatabaseAddress
from projections.pipeline_sink import PipelineSink, StatementFailed


def test_a_sink_prepares_its_statements_again_after_the_server_lost_them(database_url: str) -> None:
    with psycopg.connect(DatabaseAddress(database_url).conninfo(), row_factory=dict_row) as conn:
        conn.execute("CREATE TEMPORARY TABLE sink_probe (n int)")
        insert = "INSERT INTO sink_probe (n) VALUES (%s)"
        with conn.transaction(), PipelineSink(conn, transaction=False) as sink:
            sink.execute(insert, (1,))
        # What psycopg does on a rollback when it prepared statements of its own.
        conn.execute("DEALLOCATE ALL")
        conn.commit()
        with (
            pytest.raises(StatementFailed, match="does not exist"),
            conn.transaction(),
            PipelineSink(conn, transaction=False) as sink,
        ):
            sink.execute(insert, (2,))
        with conn.transaction(), PipelineSink(conn, transaction=False) as sink:
            sink.execute(insert, (3,))
        rows: Any = conn.execute("SELECT n FROM sink_probe ORDER BY n").fetchall()
        assert [r["n"] for r in rows] == [1, 3]
