"""Connections to PostgreSQL: the event store's environment and the read side's pool."""

from __future__ import annotations

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from infra.settings import DatabaseAddress


def ensure_database(address: DatabaseAddress) -> None:
    """Create the database named in the URL if it does not exist yet."""
    conninfo = make_conninfo(address.conninfo(), dbname="postgres")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (address.dbname,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(address.dbname)))


def ensure_schema(address: DatabaseAddress, schema: str) -> None:
    with psycopg.connect(address.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


def event_store_env(address: DatabaseAddress, schema: str, pool_size: int) -> dict[str, str]:
    """The environment eventsourcing reads to build the Ledger application's persistence."""
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "APPLICATION_RECORDER_TOPIC": "infra.write_behind:WriteBehindRecorder",
        "POSTGRES_DBNAME": address.dbname,
        "POSTGRES_HOST": address.host,
        "POSTGRES_PORT": address.port,
        "POSTGRES_USER": address.user,
        "POSTGRES_PASSWORD": address.password,
        "POSTGRES_SCHEMA": schema,
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": str(pool_size),
        "POSTGRES_LOCK_TIMEOUT": "10",
        "CREATE_TABLE": "y",
    }


def open_pool(address: DatabaseAddress, schema: str, size: int, name: str = "ledger") -> ConnectionPool:
    """A pool whose connections see the ledger's schema first, autocommit off. psycopg prepares
    nothing on them by itself: the projectors keep prepared statements of their own there, which
    psycopg's `DEALLOCATE ALL` after a rollback would drop (see projections/pipeline_sink.py).
    JIT is off: PostgreSQL compiles a query whose estimated cost is high, and a page of a list
    is estimated as if it read every row its LIMIT spares it (seconds of compiling for a page of
    customers that runs in milliseconds)."""
    pool: ConnectionPool = ConnectionPool(
        address.conninfo(),
        min_size=1,
        max_size=size,
        kwargs={
            "options": f"-c search_path={schema},public -c jit=off",
            "row_factory": dict_row,
            "prepare_threshold": None,
        },
        name=name,
        open=False,
    )
    pool.open(wait=True, timeout=30)
    return pool
