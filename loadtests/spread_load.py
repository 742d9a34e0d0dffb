"""A closed-loop gRPC load from several client processes, each over its own connections, for
servers faster than one Python client (a split server with many front ends, a GPU): the
processes' answers are added up as one load."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

import numpy as np

from .closed_loop import LoadResult, run_load

T = TypeVar("T")


def _one_process(
    target: str,
    payloads: Sequence[bytes],
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    channels: int,
) -> LoadResult:
    return asyncio.run(run_load(target, payloads, concurrency, duration_s, warmup_s, channels))


class SpreadLoad:
    """Client processes started once (their start is not measured), used for many points."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"))
        list(self._pool.map(abs, range(processes)))  # every process up before the first point

    def run(
        self,
        target: str,
        payloads: Sequence[bytes],
        concurrency: int,
        duration_s: float,
        warmup_s: float = 1.0,
        channels: int = 4,
    ) -> LoadResult:
        """`concurrency` in flight in all, split over the processes; `channels` connections
        in each process."""
        shares = [len(part) for part in np.array_split(np.arange(concurrency), self.processes)]
        futures = [
            self._pool.submit(
                _one_process, target, payloads, share, duration_s, warmup_s, min(channels, share)
            )
            for share in shares
            if share
        ]
        results = [future.result() for future in futures]
        return LoadResult(
            concurrency=concurrency,
            requests=sum(r.requests for r in results),
            errors=sum(r.errors for r in results),
            seconds=duration_s,
            latencies_ms=np.concatenate([r.latencies_ms for r in results]),
            first_error=next((r.first_error for r in results if r.first_error), ""),
        )

    def submit(self, function: Callable[..., T], *arguments: Any) -> Future[T]:
        """Any other load, run in one of the processes (a share of one the caller splits)."""
        return self._pool.submit(function, *arguments)

    def close(self) -> None:
        self._pool.shutdown()
