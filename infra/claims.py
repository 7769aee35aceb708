"""What `ledger up` claims before it starts anything: its data directory and the API's address.

A second `ledger up` on the same data directory or port must fail at once, with a message that
says why, before it prints a URL or starts a relay: both are claimed first, and held for as long
as the process runs (the lock goes with the process, however it ends)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from infra.embedded import port_owner

LOCK_FILE = "ledger-up.lock"


class AlreadyClaimed(Exception):
    """Another process holds what `ledger up` needs."""


@contextlib.contextmanager
def data_dir_claimed(data_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the data directory while the block runs."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_FILE
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise AlreadyClaimed(
                f"another `ledger up` (pid {holder}) is running on {data_dir.resolve()}; stop it first,"
                " or give this one a data directory of its own (--data-dir)"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def listening_socket(host: str, port: int) -> socket.socket:
    """The API's socket, bound now (as uvicorn binds it) so that a taken port is known before
    anything starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise AlreadyClaimed(
            f"cannot listen on {host}:{port} ({error.strerror}): it is used by {port_owner(host, port)};"
            " stop that, or choose another port (--port or LEDGER_PORT)"
        ) from None
    sock.set_inheritable(True)
    return sock
