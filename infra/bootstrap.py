"""The composition root: the one place where settings become connections, the event store, the
projector and the key store. Nothing is created at import time."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from psycopg_pool import ConnectionPool

from application.ingestion import EventResult, Ingestion, PreparedUsage
from application.ledger import Ledger
from application.stripe_sync import StripeSync
from application.webhooks import WebhookEndpoints
from infra import kafka
from infra.background import BackgroundLoop
from infra.database import ensure_database, ensure_schema, event_store_env, open_pool
from infra.group_commit import GroupCommitter
from infra.keys import KeyStore
from infra.payment_backend import PaymentBackend
from infra.relay import BackgroundRelay, Relay
from infra.seals import BackgroundSealer, create_seal_table
from infra.settings import DatabaseAddress, Settings
from infra.wakeups import WakeListener, WakeSender, channel_of
from infra.webhook_store import create_webhook_tables
from infra.webhook_vault import SecretVault, load_key
from projections.failures import ProjectionAlerts
from projections.kafka_projector import BackgroundKafkaProjection, KafkaProjector
from projections.mail_outbox import create_outbox_table
from projections.runner import BackgroundProjection, StoreProjector
from projections.schema import create_schema

if TYPE_CHECKING:
    from application.webhook_dispatch import BackgroundDispatcher
    from projections.webhook_fanout import BackgroundFanout

CORE_PROJECTION = "core"


@dataclass
class Container:
    settings: Settings
    address: DatabaseAddress
    ledger: Ledger
    pool: ConnectionPool
    keys: KeyStore
    projection: BackgroundProjection | BackgroundKafkaProjection | None = None
    relay: BackgroundRelay | None = None
    sealer: BackgroundSealer | None = None
    kafka_bootstrap_servers: str | None = None
    ingestion: Ingestion | None = None
    ingest_committer: GroupCommitter[PreparedUsage, EventResult] | None = None
    stripe_sync: StripeSync | None = None
    policies: BackgroundLoop | None = None
    clock: BackgroundLoop | None = None
    collector: BackgroundLoop | None = None
    payment_backend: PaymentBackend | None = None
    webhooks: WebhookEndpoints | None = None
    webhook_fanout: BackgroundFanout | None = None
    webhook_dispatch: BackgroundDispatcher | None = None
    mailer: BackgroundLoop | None = None
    wake_sender: WakeSender | None = None  # tells the followers of other processes
    wake_listener: WakeListener | None = None  # hears the writers of other processes
    closed: bool = field(default=False)
    _broker_ok: bool = field(default=False)
    _broker_checked_at: float = field(default=0.0)

    def broker_reachable(self) -> bool:
        """Whether the Kafka broker answers a metadata request (cached a few seconds)."""
        import time

        from kafka import KafkaAdminClient

        now = time.monotonic()
        if self._broker_checked_at and now - self._broker_checked_at < 5:
            return self._broker_ok
        admin = KafkaAdminClient(bootstrap_servers=self.kafka_bootstrap_servers, request_timeout_ms=3000)
        try:
            admin.describe_cluster()
            self._broker_ok = True
        finally:
            admin.close()
        self._broker_checked_at = now
        return self._broker_ok

    def wake_projection(self) -> None:
        """A write committed: let the relay (or the store-fed projector) look now."""
        if self.relay is not None:
            self.relay.wake()
        if self.projection is not None:
            self.projection.wake()
        if self.webhook_fanout is not None:
            self.webhook_fanout.wake()
        if self.wake_sender is not None:
            self.wake_sender.wake()

    def wake_dispatch(self) -> None:
        """A webhook delivery became due now: let the dispatcher look."""
        if self.webhook_dispatch is not None:
            self.webhook_dispatch.wake()
        if self.wake_sender is not None:
            self.wake_sender.wake()

    def _woken(self) -> None:
        """A process elsewhere wrote: every follower here looks now."""
        self.wake_projection()
        if self.webhook_dispatch is not None:
            self.webhook_dispatch.wake()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.wake_listener is not None:
            self.wake_listener.close()
        if self.wake_sender is not None:
            self.wake_sender.close()
        for loop in (self.clock, self.policies, self.collector, self.webhook_fanout, self.mailer):
            if loop is not None:
                loop.stop()
        if self.webhook_dispatch is not None:
            self.webhook_dispatch.stop()
        if self.payment_backend is not None:
            self.payment_backend.close()
        if self.relay is not None:
            self.relay.stop()
        if self.sealer is not None:
            self.sealer.stop()
        if self.projection is not None:
            self.projection.stop()
        if self.ingest_committer is not None:
            self.ingest_committer.close()
        self.pool.close()
        self.ledger.close()


def bootstrap(
    settings: Settings,
    database_url: str,
    *,
    run_projection: bool = True,
    kafka_bootstrap_servers: str | None = None,
    run_relay: bool = False,
    run_policies: bool = False,
    run_sealer: bool = False,
    notify_writes: bool = False,
    listen_for_writes: bool = False,
) -> Container:
    """Build the container. With `kafka_bootstrap_servers`, the projector consumes Kafka (and
    `run_relay` also publishes the log there); without, it reads the event store directly.
    `run_policies` also runs the daily clock, the policies and the webhook deliveries (`ledger up`
    does).
    `run_sealer` seals the hash chain over new history in the background (`infra/seals.py`).
    `notify_writes` tells the followers of other processes when this one wrote, and
    `listen_for_writes` lets this one's followers hear it (`infra/wakeups.py`): `ledger up` serves
    the API from processes of its own."""
    address = DatabaseAddress(database_url)
    ensure_database(address)
    ensure_schema(address, settings.database_schema)
    pool = open_pool(address, settings.database_schema, settings.database_pool_size)
    with pool.connection() as conn:
        create_schema(conn)
        create_seal_table(conn)
        create_webhook_tables(conn)
        create_outbox_table(conn)
    with pool.connection() as conn:
        # Processes starting together would deadlock creating the event store's functions and
        # triggers; one at a time (session lock, released when the block ends).
        conn.execute("SELECT pg_advisory_lock(7429002)")
        try:
            ledger = Ledger(
                env=event_store_env(address, settings.database_schema, settings.database_pool_size),
                invoice_prefix=settings.invoice_number_prefix,
                allow_test_clock=settings.allow_test_clock,
                invoice_grace=timedelta(hours=settings.invoice_grace_hours),
                dunning=settings.dunning,
            )
        finally:
            conn.execute("SELECT pg_advisory_unlock(7429002)")
            conn.commit()
    admin_token = settings.admin_token.get_secret_value() if settings.admin_token else None
    container = Container(settings, address, ledger, pool, KeyStore(pool, admin_token))
    container.kafka_bootstrap_servers = kafka_bootstrap_servers
    container.ingestion = Ingestion(
        ledger,
        auto_create_customers=settings.ingest_auto_create_customers,
        default_currency=settings.ingest_default_currency,
    )
    container.ingest_committer = GroupCommitter(
        container.ingestion.append_usage,
        window_seconds=settings.ingest_group_commit_window_ms / 1000,
        max_items=settings.ingest_group_commit_max_events,
        max_waiting_jobs=10_000,
        name="ingest-group-commit",
    )
    container.stripe_sync = StripeSync(ledger, default_currency=settings.ingest_default_currency)
    if settings.payment_backend_url and settings.payment_backend_api_key:
        container.payment_backend = PaymentBackend(
            settings.payment_backend_url,
            settings.payment_backend_api_key.get_secret_value(),
            timeout_seconds=settings.payment_backend_timeout_seconds,
        )
    container.webhooks = webhook_endpoints(settings, pool, ledger)
    if run_sealer:
        container.sealer = BackgroundSealer(pool)
        container.sealer.start()
    alerts = ProjectionAlerts(ledger, pool)
    if kafka_bootstrap_servers is not None:
        topic = kafka.topic_name(settings.kafka_topic_prefix)
        if run_relay:
            relay = BackgroundRelay(
                Relay(pool, kafka_bootstrap_servers, topic, partitions=settings.kafka_partitions)
            )
            relay.start()
            container.relay = relay
        if run_projection:
            servers = kafka_bootstrap_servers
            kafka_projection = BackgroundKafkaProjection(
                lambda: KafkaProjector(
                    pool,
                    servers,
                    topic,
                    CORE_PROJECTION,
                    on_failure=alerts.failed,
                    on_resume=alerts.resumed,
                    max_poll_records=settings.kafka_max_poll_records,
                )
            )
            kafka_projection.start()
            container.projection = kafka_projection
    elif run_projection:
        projection = BackgroundProjection(
            StoreProjector(pool, CORE_PROJECTION, on_failure=alerts.failed, on_resume=alerts.resumed),
            settings.projection_poll_seconds,
        )
        projection.start()
        container.projection = projection
    if run_policies:
        start_policies(container)
    channel = channel_of(settings.database_schema)
    if notify_writes:
        container.wake_sender = WakeSender(address.conninfo(), channel)
    if listen_for_writes:
        container.wake_listener = WakeListener(address.conninfo(), channel, container._woken)
    return container


def start_policies(container: Container) -> None:
    """The ledger's clock (trials ending, periods renewing, scheduled cancellations, the days) and
    the policies that follow the log (alerts)."""
    from projections.collector import BackgroundCollector, Collector
    from projections.policies import BackgroundPolicies, Policies

    def run_clock() -> int:
        container.ledger.advance_due()
        return 0

    interval = container.settings.clock_interval_seconds
    container.clock = BackgroundLoop("clock", run_clock, poll_seconds=interval, max_idle_seconds=interval)
    container.clock.start()
    backend = container.payment_backend
    policies = BackgroundPolicies(
        Policies(
            container.pool,
            container.ledger,
            CORE_PROJECTION,
            container.settings.inactivity_days,
            collect=backend is not None,
        ),
        container.settings.projection_poll_seconds,
    )
    policies.start()
    container.policies = policies
    if backend is not None:
        container.collector = BackgroundCollector(
            Collector(
                container.pool,
                container.ledger,
                backend,
                callback_url=payment_callback_url(container.settings),
                poll_seconds=container.settings.payment_poll_seconds,
            ),
            poll_seconds=1.0,
        )
        container.collector.start()
    start_webhooks(container)
    start_mailer(container)


def payment_callback_url(settings: Settings) -> str:
    return settings.public_url.rstrip("/") + "/v1/payments/callback"


def webhook_endpoints(settings: Settings, pool: ConnectionPool, ledger: Ledger) -> WebhookEndpoints:
    configured = settings.webhooks_secrets_key
    vault = SecretVault(
        pool, lambda: load_key(configured.get_secret_value() if configured else None, settings.data_dir)
    )
    return WebhookEndpoints(ledger, vault, allow_private=settings.webhooks_allow_private)


def start_webhooks(container: Container) -> None:
    """Outgoing webhooks: the fan-out follows the log into deliveries, the dispatcher sends them.
    Any number of processes may run both (`ledger up`, `ledger policies`)."""
    from application.webhook_dispatch import BackgroundDispatcher, WebhookDispatcher
    from projections.webhook_fanout import BackgroundFanout, WebhookFanout

    settings, endpoints = container.settings, container.webhooks
    assert endpoints is not None, "bootstrap builds the webhook endpoints"
    dispatch = BackgroundDispatcher(
        WebhookDispatcher(
            container.pool,
            endpoints.vault,
            endpoints,
            allow_private=settings.webhooks_allow_private,
            timeout_seconds=settings.webhooks_timeout_seconds,
            concurrency=settings.webhooks_concurrency,
        )
    )
    fanout = BackgroundFanout(
        WebhookFanout(container.pool, container.ledger, on_fanned_out=dispatch.wake),
        settings.projection_poll_seconds,
    )
    dispatch.start()
    fanout.start()
    container.webhook_dispatch, container.webhook_fanout = dispatch, fanout


def start_mailer(container: Container) -> None:
    """The e-mails of SPEC 8, following the log: to LEDGER_SMTP_URL, else <data dir>/outbox/."""
    from infra.mail.transport import transport_from
    from projections.documents import seller_party
    from projections.mailer import BackgroundMailer, Mailer

    settings = container.settings
    mailer = Mailer(
        container.pool, container.ledger, transport_from(settings), seller_party(settings), CORE_PROJECTION
    )
    mailer.begin_at_head()
    background = BackgroundMailer(mailer, settings.projection_poll_seconds)
    background.start()
    container.mailer = background
