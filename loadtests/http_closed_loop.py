"""A closed-loop HTTP/1.1 load from one process, the REST twin of closed_loop.run_load: each
worker keeps one keep-alive connection and sends its next request as soon as the last one is
answered. Requests are built once up front as bytes, so the client spends its CPU on the wire."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from .closed_loop import LoadResult, Send, closed_loop


def http_request(host: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> int:
    """Send one request, read its whole answer; the status code."""
    writer.write(data)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def run_http_load(
    address: str,
    requests: Sequence[bytes],
    concurrency: int,
    duration_s: float,
    warmup_s: float = 1.0,
) -> LoadResult:
    """Prepared HTTP requests, closed loop, one keep-alive connection per worker."""
    host, port = address.rsplit(":", 1)

    @contextlib.asynccontextmanager
    async def sender(index: int) -> AsyncIterator[Send]:
        reader, writer = await asyncio.open_connection(host, int(port))

        async def send(n: int) -> str | None:
            status = await _exchange(reader, writer, requests[n % len(requests)])
            return None if status == 200 else f"HTTP {status}"

        try:
            yield send
        finally:
            writer.close()

    return await closed_loop(concurrency, duration_s, warmup_s, sender)
