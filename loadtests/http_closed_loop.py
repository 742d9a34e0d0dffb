"""A closed-loop HTTP/1.1 load from one process, the REST twin of closed_loop.run_load: each
worker keeps one keep-alive connection and sends its next request as soon as the last one is
answered. Requests are built once up front as bytes, so the client spends its CPU on the wire."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import numpy as np

from .closed_loop import LoadResult


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
    host, port = address.rsplit(":", 1)
    latencies: list[float] = []
    errors: list[str] = []
    started = time.perf_counter()
    measure_from = started + warmup_s
    stop_at = measure_from + duration_s

    async def worker(index: int) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        sent = index
        try:
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    return
                status = await _exchange(reader, writer, requests[sent % len(requests)])
                sent += concurrency
                t1 = time.perf_counter()
                if t0 >= measure_from and t1 <= stop_at:
                    if status == 200:
                        latencies.append((t1 - t0) * 1e3)
                    else:
                        errors.append(f"HTTP {status}")
        finally:
            writer.close()

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return LoadResult(
        concurrency=concurrency,
        requests=len(latencies),
        errors=len(errors),
        seconds=duration_s,
        latencies_ms=np.asarray(latencies),
        first_error=errors[0] if errors else "",
    )
