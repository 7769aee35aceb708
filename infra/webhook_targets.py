"""Where the ledger may post webhooks: public addresses only (unless LEDGER_WEBHOOKS_ALLOW_PRIVATE).

A webhook URL is chosen by whoever holds an admin key, and the ledger then makes requests to it
from inside the network it runs in. Without a check, that is a way to reach the database's host,
the cloud's metadata service (169.254.169.254) or any internal service (SSRF). So the host is
resolved and every address it resolves to must be globally routable: loopback (127/8, ::1),
private (10/8, 172.16/12, 192.168/16, fc00::/7), link-local (169.254/16, fe80::/10), shared,
reserved, multicast and unspecified addresses are refused, IPv4 inside IPv6 (::ffff:10.0.0.1,
64:ff9b::/96) included.

The check runs twice: when the endpoint is created (a clear 422 naming `url`), and at every
connection the sender opens (`GuardedBackend`), on the very address it connects to, so a name that
later resolves elsewhere (DNS rebinding) is refused too."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import typing
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from urllib.parse import urlsplit

import httpcore

from domain.errors import InvalidValue

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
NAT64 = ipaddress.ip_network("64:ff9b::/96")
MAX_URL_LENGTH = 2048
RESOLVE_TIMEOUT_SECONDS = 5.0


class PrivateAddress(Exception):
    """The target resolves to an address the ledger does not post to."""


def is_public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or (
            ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in NAT64 else None
        )
        if embedded is not None:
            return is_public(embedded)
    return address.is_global and not address.is_multicast


def refused(addresses: Iterable[Address]) -> list[Address]:
    return [a for a in addresses if not is_public(a)]


def split_url(url: str) -> tuple[str, int]:
    """Host and port of a webhook URL, or InvalidValue on `url`: http(s), a host, no credentials
    (they would be recorded in the log, which keeps nothing secret)."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidValue(f"at most {MAX_URL_LENGTH} characters", field="url")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise InvalidValue("a URL has no spaces or control characters", field="url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as bad:
        raise InvalidValue(f"not a URL: {bad}", field="url") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidValue("an http:// or https:// URL", field="url")
    if not parts.hostname:
        raise InvalidValue("the URL names no host", field="url")
    if parts.username is not None or parts.password is not None:
        raise InvalidValue(
            "no credentials in the URL (they would be stored in the log): receivers verify the signature",
            field="url",
        )
    if parts.fragment:
        raise InvalidValue("a URL without a #fragment (it is never sent)", field="url")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def resolve(host: str, port: int, timeout: float = RESOLVE_TIMEOUT_SECONDS) -> list[Address]:
    """Every address `host` resolves to (a literal address is itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    with ThreadPoolExecutor(max_workers=1) as pool:  # getaddrinfo itself cannot be interrupted
        future = pool.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
        try:
            infos = future.result(timeout=timeout)
        except FutureTimeout:
            raise OSError(f"resolving {host} took longer than {timeout:g}s") from None
    return _addresses(infos)


def _addresses(infos: Iterable[tuple[typing.Any, ...]]) -> list[Address]:
    found: list[Address] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


def check_target(url: str, *, allow_private: bool) -> None:
    """Refuse (InvalidValue on `url`) a URL the ledger may not post to."""
    host, port = split_url(url)
    if allow_private:
        return
    try:
        addresses = resolve(host, port)
    except OSError as failed:
        raise InvalidValue(f"the host {host} does not resolve: {failed}", field="url") from None
    if not addresses:
        raise InvalidValue(f"the host {host} does not resolve", field="url")
    if bad := refused(addresses):
        raise InvalidValue(
            f"{host} resolves to {', '.join(map(str, bad))}: loopback, private and link-local addresses are"
            " refused (LEDGER_WEBHOOKS_ALLOW_PRIVATE=true allows them)",
            field="url",
        )


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, resolving each host itself and connecting only to the
    addresses it checked (so TLS still verifies the name, and a pooled connection stays keyed on
    it)."""

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            addresses = _addresses(infos)
        if not self.allow_private and (bad := refused(addresses)):
            raise httpcore.ConnectError(
                f"{host} resolves to {', '.join(map(str, bad))}: private addresses are refused"
                " (LEDGER_WEBHOOKS_ALLOW_PRIVATE)"
            )
        if not addresses:
            raise httpcore.ConnectError(f"{host} does not resolve")
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as failed:
                failure = failed
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks are sent over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
