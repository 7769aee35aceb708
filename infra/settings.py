"""All configuration, read from LEDGER_* environment variables or a .env file."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, unquote, urlparse

from psycopg.conninfo import make_conninfo
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.dunning import DunningPolicy


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEDGER_", env_file=".env", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL; unset means `ledger up` starts embedded PostgreSQL",
    )
    database_schema: str = Field(default="ledger", pattern=r"^[a-z_][a-z0-9_]{0,50}$")
    database_pool_size: int = Field(default=8, ge=1, le=100)
    data_dir: Path = Path(".ledger")
    host: str = "127.0.0.1"
    port: int = 8000
    api_workers: int = Field(
        default=0,
        ge=0,
        le=64,
        description="processes serving the API in `ledger up` (0: one per CPU core)",
    )
    follower_niceness: int = Field(
        default=10,
        ge=0,
        le=19,
        description="scheduling priority given up by the followers of the log in `ledger up` (relay,"
        " projectors, policies) so that requests come first on busy cores (0: the same priority)",
    )
    admin_token: SecretStr | None = Field(
        default=None, description="an admin bearer token accepted as is (no default)"
    )
    stripe_webhook_secret: SecretStr | None = None
    kafka_bootstrap_servers: str | None = None
    kafka_port: int = Field(
        default=9092, ge=1, le=65535, description="port of the embedded broker (`ledger up` without a broker)"
    )
    kafka_topic_prefix: str = ""
    kafka_partitions: int = Field(default=6, ge=1, le=256, description="partitions of a new topic")
    kafka_max_poll_records: int = Field(
        default=5000, ge=1, le=100_000, description="events a projector applies per transaction, at most"
    )
    read_wait_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    projection_poll_seconds: float = Field(default=0.05, gt=0, le=5)
    invoice_number_prefix: str = "INV"
    invoice_grace_hours: float = Field(
        default=1.0,
        ge=0,
        le=24 * 31,
        description="a generated invoice stays a draft this long (late usage of its period joins it)",
    )
    clock_interval_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="a time-driven transition is recorded at the latest this long after it falls due",
    )
    allow_test_clock: bool = Field(
        default=False,
        description="let an admin move the ledger's now forward (POST /v1/ops/clock); never in production",
    )
    inactivity_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description="a customer with a live subscription and no usage for this many days: customer_inactive",
    )
    ingest_auto_create_customers: bool = Field(
        default=False, description="usage for an unknown customer registers it instead of being rejected"
    )
    ingest_default_currency: str = Field(
        default="USD",
        pattern=r"^[A-Z]{3}$",
        description="currency of customers created by ingest or Stripe when none is known",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="a request body over this is refused (413) before anything is read into a command",
    )
    ingest_max_batch_events: int = Field(default=1000, ge=1, le=100_000)
    ingest_max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    ingest_group_commit_window_ms: float = Field(
        default=2.0, ge=0, le=100, description="how long single events wait to share a commit"
    )
    ingest_group_commit_max_events: int = Field(default=2000, ge=1)
    stripe_webhook_tolerance_seconds: int = Field(default=300, ge=1)
    analytics_timeout_seconds: float = Field(
        default=10.0, gt=0, le=600, description="an analytics query running longer is stopped"
    )
    analytics_max_rows: int = Field(default=10_000, ge=1, le=1_000_000, description="rows one answer holds")
    analytics_memory_limit: str = Field(
        # 128MB: the whole 3.7-million-event benchmark log loads and answers as fast as with
        # 256MB (it spills either way), and the process answering analytics peaks 180 MB lower.
        default="128MB",
        pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|KiB|MiB|GiB)$",
        description="DuckDB's memory limit per process; the analytics copy beyond it spills to"
        " <data dir>/analytics-tmp",
    )
    enable_simulation: bool = Field(
        default=False,
        description="demo endpoints POST /v1/simulation/* (set by `ledger up --demo`); never in production",
    )
    analytics_max_staleness_seconds: float = Field(
        default=5.0, ge=0, le=3600, description="a query refreshes an analytics copy this old"
    )
    payment_backend_url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="the payment backend (seed 004's contract); unset: payments are recorded by hand",
    )
    payment_backend_api_key: SecretStr | None = Field(
        default=None, description="bearer key for the payment backend; also signs its callbacks"
    )
    payment_backend_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    payment_poll_seconds: float = Field(
        default=60.0, gt=0, le=86_400, description="how often pending payments' status is asked"
    )
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        pattern=r"^https?://",
        description="where outside services reach this ledger (the payment callback URL is built on it)",
    )
    dunning_retry_days: str = Field(
        default="1,3,5,7", description="days after a failed automatic payment on which it is tried again"
    )
    reminder_days: str = Field(
        default="-3,1,7,14", description="days relative to a sent invoice's due date on which to remind"
    )
    dunning_final_action: Literal["cancel_subscription", "mark_uncollectible", "none"] = Field(
        default="cancel_subscription", description="what an exhausted dunning schedule does"
    )

    @field_validator("dunning_retry_days")
    @classmethod
    def _retry_days(cls, value: str) -> str:
        DunningPolicy.parse(value, "", "none")  # refused at start, not at the first failure
        return value

    @field_validator("reminder_days")
    @classmethod
    def _reminder_days(cls, value: str) -> str:
        DunningPolicy.parse("", value, "none")
        return value

    @property
    def dunning(self) -> DunningPolicy:
        return DunningPolicy.parse(self.dunning_retry_days, self.reminder_days, self.dunning_final_action)

    webhooks_allow_private: bool = Field(
        default=False,
        description="let webhook endpoints point at loopback, private and link-local addresses (tests, labs)",
    )
    webhooks_secrets_key: SecretStr | None = Field(
        default=None,
        description="base64 of 32 bytes encrypting webhook signing secrets at rest; unset: a key file"
        " generated in the data directory",
    )
    webhooks_timeout_seconds: float = Field(
        default=15.0, gt=0, le=60, description="a webhook attempt without an answer by then has failed"
    )
    webhooks_concurrency: int = Field(
        default=16, ge=1, le=256, description="webhook attempts in flight at once, per process"
    )

    # The seller on invoices and credit notes (EU Directive 2006/112/EC art. 226) and the sender
    # of the e-mails. Read when a document is rendered: change them and documents render anew.
    seller_name: str = Field(default="Billing Ledger", min_length=1, max_length=200)
    seller_address: str = Field(
        default="", max_length=1000, description="the seller's postal address; lines separated by ';'"
    )
    seller_vat_id: str = Field(
        default="", max_length=50, description="the seller's VAT identification number"
    )
    seller_email: str = Field(
        default="billing@example.com",
        pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
        description="From: of the e-mails; its domain ends every Message-ID",
    )
    smtp_url: SecretStr | None = Field(
        default=None,
        description="smtp://user:pass@host:port or smtps://...; unset: e-mails go to <data dir>/outbox/",
    )
    smtp_timeout_seconds: float = Field(default=15.0, gt=0, le=300)


class DatabaseAddress:
    """A PostgreSQL URL split into the parts libpq and eventsourcing want."""

    def __init__(self, url: str) -> None:
        self.url = url

    @cached_property
    def _parsed(self) -> dict[str, str]:
        parsed = urlparse(self.url)
        query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
        return {
            "host": query.get("host") or parsed.hostname or "127.0.0.1",
            "port": str(parsed.port or query.get("port") or 5432),
            "user": unquote(parsed.username or query.get("user") or "postgres"),
            "password": unquote(parsed.password or query.get("password") or ""),
            "dbname": (parsed.path or "/postgres").lstrip("/") or "postgres",
        }

    @property
    def host(self) -> str:
        return self._parsed["host"]

    @property
    def port(self) -> str:
        return self._parsed["port"]

    @property
    def user(self) -> str:
        return self._parsed["user"]

    @property
    def password(self) -> str:
        return self._parsed["password"]

    @property
    def dbname(self) -> str:
        return self._parsed["dbname"]

    def conninfo(self) -> str:
        """libpq connection string, values escaped by psycopg (passwords may hold quotes)."""
        return make_conninfo("", **{key: value for key, value in self._parsed.items() if value})
