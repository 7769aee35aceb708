"""A minimal HTTP/1.1 load generator on asyncio: cheap per request, so that the machine's cores go
to the server and PostgreSQL rather than to the client measuring them."""

from __future__ import annotations

import asyncio
import time


def request_bytes(path: str, body: bytes, content_type: str, token: str, *, extra: str = "") -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return status, await reader.readexactly(length)


async def _drive(
    port: int, requests: list[bytes], clients: int, reconnect: bool
) -> tuple[float, list[tuple[int, bytes]]]:
    answers: list[tuple[int, bytes]] = [(0, b"")] * len(requests)
    next_index = iter(range(len(requests)))

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in next_index:
            if reconnect and i >= clients:
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            answers[i] = await _exchange(reader, writer, requests[i])
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - start, answers


def drive(
    port: int, requests: list[bytes], clients: int, *, reconnect: bool = False
) -> tuple[float, list[tuple[int, bytes]]]:
    """Send every request once from `clients` concurrent clients, over keep-alive connections or
    a new connection per request (`reconnect`: so that server processes accepting from one
    listening socket share the load evenly); (seconds, answers in request order)."""
    return asyncio.run(_drive(port, requests, clients, reconnect))
