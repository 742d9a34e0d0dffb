"""A front end's scheduler: requests go to the engine's scheduler of the same model version.

Requests travel as engine jobs; while a model's engine is busy, they travel together. For a
model with dynamic batching, each kind of request (the same outputs, priority, queue timeout and
input signature) may have a few jobs at the engine at once (one per instance, and one more
waiting); requests that come while that many are out wait here and leave as one job when one
comes back, when they fill a batch, or after at most 10 ms (so a full engine queue still refuses
at once). So the engine's per-request work (receiving,
queueing, answering) is paid per job, about a batch's worth of requests under load, and nothing
waits when the engine is idle. A job counts as its requests against the engine's queue bound;
each caller gets its own rows back. A job's deadline is the latest of its requests' (none if one
has none): the engine drops a job only when no request in it can still use its answer, and a
caller whose own deadline passes gets DEADLINE_EXCEEDED from its transport as ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from ..batching.queue import JobQueue, feeds_signature
from ..batching.scheduler import JobResult
from ..batching.wait_check import refuse_if_late, wait_limit
from ..protocol.errors import ErrorKind, ModelUnavailable, ServerBusy
from ..protocol.sequence_config import SequenceStep
from . import wire
from .engine_client import EngineClient

MAX_WAIT_S = 0.01
"""The longest a request waits in the front end for the engine to take fewer jobs."""

BUSY_MEMORY_S = 0.05
"""After the engine refuses a job as busy, how long the front end refuses new requests of the
version before decoding them (a busy engine is still busy a moment later)."""


class HoldsEngineCounts(Protocol):
    engine_counts: list[int]
    """The engine's inference and execution counts of the version, as of its last answer."""


@dataclass
class _Waiting:
    feeds: dict[str, np.ndarray]
    items: int
    deadline_s: float | None
    future: asyncio.Future[JobResult]


def _own_copy(exc: Exception) -> Exception:
    """Each caller raises its own exception object (a raise adds to its traceback)."""
    if isinstance(exc, wire.EngineError):
        return wire.EngineError(exc.kind, exc.message)
    return exc


@dataclass
class _Kind:
    """The requests of one kind: jobs of it at the engine, and those waiting to go."""

    in_flight: int = 0
    waiting: list[_Waiting] = field(default_factory=list)
    items: int = 0
    timer: asyncio.TimerHandle | None = None


class RemoteScheduler:
    """Submits jobs to the engine's scheduler of one model version (`pinned`: that version;
    otherwise the engine's newest)."""

    def __init__(
        self,
        client: EngineClient,
        name: str,
        version: int,
        pinned: bool,
        stats: HoldsEngineCounts,
        config: mc.ModelConfig,
        max_queue_wait_ms: float = 0.0,
    ) -> None:
        self._client = client
        self._stats = stats
        self._name = name
        self._version = version
        self._pinned = pinned
        self.batching = True
        self._sequences = config.HasField("sequence_batching")
        batches = config.HasField("dynamic_batching") and config.max_batch_size > 0
        self._group_items = config.max_batch_size if batches else 0
        instances = sum(max(group.count, 1) for group in config.instance_group) or 1
        self._jobs_out = instances + 1  # every instance busy, and one job waiting
        self._kinds: dict[tuple, _Kind] = {}
        self._sending: set[asyncio.Task[None]] = set()
        self._busy: tuple[float, str] | None = None
        """When the engine last refused a job as busy, and its words."""
        queue = JobQueue(name, config.dynamic_batching if batches else None, 0)
        self._policy = queue.policy(queue.default_level)
        self._max_wait_ns = max_queue_wait_ms * 1e6
        self._engine_backlog = (0.0, 0.0)
        """The engine's queued work of this version (ns) as of its last answer, and when."""
        self._item_ns = 0.0
        """What one more item adds to the engine's queue (ns; 0 while it does not know)."""
        self._reserved = 0
        """Items of requests admitted here and still being prepared (images decoded)."""

    @contextlib.contextmanager
    def reserve(self, items: int, deadline_s: float | None = None) -> Iterator[None]:
        """The engine's scheduler checks each job's wait; here a request is refused before
        its images are decoded while the engine refused one of this version a moment ago, or
        when the engine's queue as it last told (less what it has run since), with what this
        front end holds back, is past the request's bounds."""
        if self._busy is not None:
            refused_at, message = self._busy
            if time.monotonic() - refused_at < BUSY_MEMORY_S:
                raise ServerBusy(message)
            self._busy = None
        self._check_wait(items, deadline_s)
        self._reserved += items
        try:
            yield
        finally:
            self._reserved -= items

    def _check_wait(self, items: int, deadline_s: float | None) -> None:
        backlog_ns, told_at = self._engine_backlog
        engine_ns = max(0.0, backlog_ns - (time.monotonic() - told_at) * 1e9)
        here = self._reserved + sum(kind.items for kind in self._kinds.values())
        if not (engine_ns or here) or not self._item_ns:
            return  # nothing ahead, or no pace known yet: the engine judges
        limit = wait_limit(self._max_wait_ns, self._policy, self._policy.timeout_for(0), deadline_s)
        wait_ns = engine_ns + self._item_ns * (here + items)
        ahead = (
            f"about {engine_ns / 1e6:.0f} ms of work is queued at the engine and {here} items here"
        )
        refuse_if_late(self._name, ahead, wait_ns, limit)

    async def submit(
        self,
        feeds: dict[str, np.ndarray],
        items: int,
        output_names: Sequence[str],
        priority: int = 0,
        timeout_us: int = 0,
        deadline_s: float | None = None,
        sequence: SequenceStep | None = None,
    ) -> JobResult:
        if self._sequences:  # the engine keeps every sequence's state: each step goes alone
            step = (sequence.id, sequence.start, sequence.end) if sequence is not None else None
            (result,) = await self._send(
                [feeds], [items], list(output_names), priority, timeout_us, deadline_s, step
            )
            return result
        if items >= self._group_items:
            (result,) = await self._send(
                [feeds], [items], list(output_names), priority, timeout_us, deadline_s
            )
            return result
        future: asyncio.Future[JobResult] = asyncio.get_running_loop().create_future()
        key = (tuple(output_names), priority, timeout_us, feeds_signature(feeds))
        kind = self._kinds.setdefault(key, _Kind())
        if kind.items + items > self._group_items:
            self._dispatch(key, kind)  # what waits would overflow a batch: it goes now
        kind.waiting.append(_Waiting(feeds, items, deadline_s, future))
        kind.items += items
        if kind.in_flight < self._jobs_out or kind.items >= self._group_items:
            self._dispatch(key, kind)
        elif kind.timer is None:
            kind.timer = asyncio.get_running_loop().call_later(
                MAX_WAIT_S, self._dispatch, key, kind
            )
        return await future

    def _dispatch(self, key: tuple, kind: _Kind) -> None:
        if kind.timer is not None:
            kind.timer.cancel()
            kind.timer = None
        if not kind.waiting:
            return
        chunk, kind.waiting, kind.items = kind.waiting, [], 0
        kind.in_flight += 1
        outputs, priority, timeout_us, _ = key
        task = asyncio.ensure_future(self._run(chunk, list(outputs), priority, timeout_us))
        self._sending.add(task)
        task.add_done_callback(functools.partial(self._returned, key, kind))

    def _returned(self, key: tuple, kind: _Kind, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        kind.in_flight -= 1
        if kind.waiting:
            self._dispatch(key, kind)
        elif not kind.in_flight:
            self._kinds.pop(key, None)

    async def _run(
        self, chunk: list[_Waiting], outputs: list[str], priority: int, timeout_us: int
    ) -> None:
        deadlines = [r.deadline_s for r in chunk]
        known = [d for d in deadlines if d is not None]
        deadline = max(known) if len(known) == len(deadlines) else None
        try:
            results = await self._send(
                [r.feeds for r in chunk],
                [r.items for r in chunk],
                outputs,
                priority,
                timeout_us,
                deadline,
            )
        except BaseException as exc:  # cancelled too: no caller may be left waiting
            if isinstance(exc, wire.EngineError) and exc.kind == ErrorKind.RESOURCE_EXHAUSTED:
                self._busy = (time.monotonic(), exc.message)
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
        sequence: tuple[int | str, bool, bool] | None = None,
    ) -> list[JobResult]:
        """One engine job for these requests; each request's rows of its outputs. `sequence`:
        a sequence model's step (id, start, end)."""
        merged = (
            feeds[0]
            if len(feeds) == 1
            else {name: np.concatenate([f[name] for f in feeds]) for name in feeds[0]}
        )
        descriptors, frames = wire.describe(merged)
        header = [
            "submit", self._name, self._version, self._pinned, sum(items), output_names,
            priority, timeout_us, deadline_s, descriptors, len(feeds), sequence,
        ]  # fmt: skip
        body, received = await self._client.call(header, frames)
        (
            queue_ns,
            input_ns,
            infer_ns,
            output_ns,
            batch_items,
            outputs,
            backlog_ns,
            item_ns,
            *counts,
        ) = body
        self._stats.engine_counts = counts
        self._engine_backlog = (backlog_ns, time.monotonic())
        self._item_ns = item_ns
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
