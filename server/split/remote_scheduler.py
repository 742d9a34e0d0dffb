"""A front end's scheduler: requests go to the engine's scheduler of the same model version.

Requests that reach a front end in one turn of its event loop and could share a batch anyway
(a model with dynamic batching; the same outputs, priority, queue timeout and input signature;
no deadline) travel as one job, so the engine's per-request work (receiving, queueing,
answering) is paid once per group, not once per request. The job counts as that many requests
against the engine's queue bound, and each caller gets its own rows back. A request with a
deadline travels alone, so the engine can drop exactly it when the deadline passes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from ..errors import ModelUnavailable
from ..scheduler import JobResult
from . import wire
from .engine_client import EngineClient


@dataclass
class _Waiting:
    feeds: dict[str, np.ndarray]
    items: int
    future: asyncio.Future[JobResult]


def _own_copy(exc: Exception) -> Exception:
    """Each caller raises its own exception object (a raise adds to its traceback)."""
    if isinstance(exc, wire.EngineError):
        return wire.EngineError(exc.kind, exc.message)
    return exc


def _signature(feeds: dict[str, np.ndarray]) -> tuple:
    return tuple((name, array.dtype.str, array.shape[1:]) for name, array in feeds.items())


class RemoteScheduler:
    """Submits jobs to the engine's scheduler of one model version (`pinned`: that version;
    otherwise the engine's newest)."""

    def __init__(
        self,
        client: EngineClient,
        name: str,
        version: int,
        pinned: bool,
        stats: object,
        config: mc.ModelConfig,
    ) -> None:
        self._client = client
        self._stats = stats
        self._name = name
        self._version = version
        self._pinned = pinned
        self.batching = True
        batches = config.HasField("dynamic_batching") and config.max_batch_size > 0
        self._group_items = config.max_batch_size if batches else 0
        self._groups: dict[tuple, list[_Waiting]] = {}
        self._flush_scheduled = False
        self._sending: set[asyncio.Task[None]] = set()

    async def submit(
        self,
        feeds: dict[str, np.ndarray],
        items: int,
        output_names: Sequence[str],
        priority: int = 0,
        timeout_us: int = 0,
        deadline_s: float | None = None,
    ) -> JobResult:
        if deadline_s is not None or items >= self._group_items:
            (result,) = await self._send(
                [feeds], [items], list(output_names), priority, timeout_us, deadline_s
            )
            return result
        loop = asyncio.get_running_loop()
        future: asyncio.Future[JobResult] = loop.create_future()
        key = (tuple(output_names), priority, timeout_us, _signature(feeds))
        self._groups.setdefault(key, []).append(_Waiting(feeds, items, future))
        if not self._flush_scheduled:
            # After every callback ready in this turn: the requests that arrived with this one.
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._flush_scheduled = False
        groups, self._groups = self._groups, {}
        for (outputs, priority, timeout_us, _), waiting in groups.items():
            chunk: list[_Waiting] = []
            items = 0
            for request in waiting:
                if chunk and items + request.items > self._group_items:
                    self._start(chunk, list(outputs), priority, timeout_us)
                    chunk, items = [], 0
                chunk.append(request)
                items += request.items
            self._start(chunk, list(outputs), priority, timeout_us)

    def _start(
        self, chunk: list[_Waiting], outputs: list[str], priority: int, timeout_us: int
    ) -> None:
        task = asyncio.ensure_future(self._run(chunk, outputs, priority, timeout_us))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _run(
        self, chunk: list[_Waiting], outputs: list[str], priority: int, timeout_us: int
    ) -> None:
        try:
            results = await self._send(
                [r.feeds for r in chunk], [r.items for r in chunk], outputs, priority, timeout_us
            )
        except BaseException as exc:  # cancelled too: no caller may be left waiting
            failure = exc if isinstance(exc, Exception) else ModelUnavailable("server stopping")
            for request in chunk:
                if not request.future.done():
                    request.future.set_exception(_own_copy(failure))
            if not isinstance(exc, Exception):
                raise
            return
        for request, result in zip(chunk, results, strict=True):
            if not request.future.done():  # its caller may have gone
                request.future.set_result(result)

    async def _send(
        self,
        feeds: list[dict[str, np.ndarray]],
        items: list[int],
        output_names: list[str],
        priority: int,
        timeout_us: int,
        deadline_s: float | None = None,
    ) -> list[JobResult]:
        """One engine job for these requests; each request's rows of its outputs."""
        merged = (
            feeds[0]
            if len(feeds) == 1
            else {name: np.concatenate([f[name] for f in feeds]) for name in feeds[0]}
        )
        descriptors, frames = wire.describe(merged)
        header = [
            "submit", self._name, self._version, self._pinned, sum(items), output_names,
            priority, timeout_us, deadline_s, descriptors, len(feeds),
        ]  # fmt: skip
        body, received = await self._client.call(header, frames)
        queue_ns, input_ns, infer_ns, output_ns, batch_items, outputs, *counts = body
        self._stats.engine_counts = counts  # type: ignore[attr-defined]
        arrays = wire.arrays(outputs, received)
        results, offset = [], 0
        for count in items:
            rows = (
                arrays
                if len(items) == 1
                else {n: a[offset : offset + count] for n, a in arrays.items()}
            )
            results.append(JobResult(rows, queue_ns, input_ns, infer_ns, output_ns, batch_items))
            offset += count
        return results

    def retire(self) -> None:
        pass
