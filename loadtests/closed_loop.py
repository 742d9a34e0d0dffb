"""A closed-loop gRPC load from one process: `concurrency` workers, each sending its next request
as soon as the last one is answered. Requests are serialized once up front and sent as bytes, so
the client spends its CPU on the wire, not on protobuf."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import grpc
import numpy as np

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


@dataclass(frozen=True)
class LoadResult:
    concurrency: int
    requests: int
    errors: int
    seconds: float
    latencies_ms: np.ndarray
    first_error: str = ""

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return (
            float(np.percentile(self.latencies_ms, q)) if len(self.latencies_ms) else float("nan")
        )


def _identity(data: bytes) -> bytes:
    return data


Send = Callable[[int], Awaitable[str | None]]
"""Sends request number n and waits for its answer: None when it succeeded, else the error."""


async def closed_loop(
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    worker_sender: Callable[[int], AbstractAsyncContextManager[Send]],
) -> LoadResult:
    """`concurrency` workers, each with its own sender, each sending its next request as soon
    as the last is answered: `warmup_s` not counted, then `duration_s` measured. Shared by the
    gRPC and HTTP loads, so both measure alike."""
    latencies: list[float] = []
    errors: list[str] = []
    measure_from = time.perf_counter() + warmup_s
    stop_at = measure_from + duration_s

    async def worker(index: int) -> None:
        async with worker_sender(index) as send:
            sent = index
            while (t0 := time.perf_counter()) < stop_at:
                error = await send(sent)
                sent += concurrency
                t1 = time.perf_counter()
                if t0 >= measure_from and error is not None:
                    errors.append(error)
                elif t0 >= measure_from and t1 <= stop_at:
                    latencies.append((t1 - t0) * 1e3)

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return LoadResult(
        concurrency=concurrency,
        requests=len(latencies),
        errors=len(errors),
        seconds=duration_s,
        latencies_ms=np.asarray(latencies),
        first_error=errors[0] if errors else "",
    )


async def run_load(
    target: str,
    payloads: Sequence[bytes],
    concurrency: int,
    duration_s: float,
    warmup_s: float = 1.0,
    channels: int = 1,
    metadata: tuple[tuple[str, str], ...] = (),
) -> LoadResult:
    """gRPC ModelInfer, closed loop, over `channels` shared channels (connections);
    `metadata`: headers of every call (a bearer token)."""
    options = [
        ("grpc.max_receive_message_length", 64 << 20),
        ("grpc.max_send_message_length", 64 << 20),
        # A connection a channel: gRPC shares one between like channels unless told not to.
        ("grpc.use_local_subchannel_pool", 1),
    ]
    opened = [grpc.aio.insecure_channel(target, options=options) for _ in range(channels)]
    calls = [
        ch.unary_unary(MODEL_INFER, request_serializer=_identity, response_deserializer=_identity)
        for ch in opened
    ]

    @contextlib.asynccontextmanager
    async def sender(index: int) -> AsyncIterator[Send]:
        call = calls[index % len(calls)]

        async def send(n: int) -> str | None:
            try:
                await call(payloads[n % len(payloads)], timeout=30, metadata=metadata or None)
            except grpc.aio.AioRpcError as error:
                return f"{error.code().name}: {error.details()}"
            return None

        yield send

    try:
        return await closed_loop(concurrency, duration_s, warmup_s, sender)
    finally:
        for channel in opened:
            await channel.close()
