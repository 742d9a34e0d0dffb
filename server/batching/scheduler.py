"""Per-model scheduler: a dynamic batcher with Triton's semantics, in front of the instances.

Requests become jobs in a bounded priority queue. One asyncio task per model version forms
batches whenever an instance is free: compatible jobs (same input signature) are merged whole, up
to max_batch_size, preferring `preferred_batch_size`, waiting at most `max_queue_delay` for more.
The merged batch runs on a worker thread through an instance (batching/instance.py: gather,
run, slice back), so the event loop never blocks; each job gets its own slice. A model without
`dynamic_batching` runs jobs one by one, through the same queue and instances.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from ..observability import request_context, tracing
from ..observability.histograms import VersionHistograms
from ..protocol.errors import DeadlineExceeded, QueueTimeout
from ..protocol.sequence_config import SequenceStep
from .instance import BatchRun, Instance
from .pace import Pace
from .queue import US, Job, JobQueue, feeds_signature
from .stats import ModelStats
from .wait_check import refuse_if_late, wait_limit


@dataclass(frozen=True)
class JobResult:
    outputs: dict[str, np.ndarray]
    queue_ns: int
    batch_input_ns: int
    infer_ns: int
    batch_output_ns: int
    batch_items: int
    """Items in the batch the request ran in."""


INLINE_MAX_RUN_NS = 5_000_000
"""A request may run on the event loop's own thread when its model's pace says the run takes at
most this long (and the version is quiet): the loop is held no longer than that."""
LOOP_IDLE_NS = 150_000
"""The version counts as quiet when the event loop's thread has slept at least this long since
its latest run (wall time less the thread's CPU time): one caller at a time leaves it asleep
for a client's round trip (about 0.5 ms measured here), several keep it busy (under 0.1 ms of
sleep between runs)."""


class JobScheduler(Protocol):
    """What the data plane needs of a model version's scheduler: this process's batcher, or a
    split server's front end sending the work to the engine's."""

    batching: bool

    async def submit(
        self,
        feeds: dict[str, np.ndarray],
        items: int,
        output_names: Sequence[str],
        priority: int = 0,
        timeout_us: int = 0,
        deadline_s: float | None = None,
        sequence: SequenceStep | None = None,
    ) -> JobResult: ...

    def reserve(
        self, items: int, deadline_s: float | None = None
    ) -> contextlib.AbstractContextManager[None]:
        """Raise ServerBusy now if a request of `items` could not be served in time, so work
        done before submitting (decoding images) is not spent on it; while the context is
        open its items count as queued for the requests that come after it."""
        ...

    def retire(self) -> None:
        """The version is replaced or unloaded: finish what is queued, take nothing new."""
        ...


class Scheduler:
    """Queue + batcher + instances of one model version."""

    def __init__(
        self,
        name: str,
        config: mc.ModelConfig,
        instances: Sequence[Instance],
        executor: Executor,
        stats: ModelStats,
        default_max_queue_size: int,
        histograms: VersionHistograms | None = None,
        max_queue_wait_ms: float = 0.0,
    ) -> None:
        self.name = name
        has_batcher = config.HasField("dynamic_batching") and config.max_batch_size > 0
        self.batching = has_batcher
        self.max_batch_size = max(config.max_batch_size, 1)
        policy = config.dynamic_batching if has_batcher else None
        self.preferred = sorted(set(policy.preferred_batch_size)) if policy else []
        self.delay_ns = policy.max_queue_delay_microseconds * US if policy else 0
        self.preserve_ordering = bool(policy and policy.preserve_ordering)
        self.queue = JobQueue(name, policy, default_max_queue_size)
        self._scan_limit = max(64, 4 * self.max_batch_size)
        self._idle: list[Instance] = list(instances)
        self.instance_count = len(instances)
        self._pace = Pace(len(instances))
        self._max_wait_ns = max_queue_wait_ms * 1e6
        self._reserved = 0
        """Items of requests admitted and still being prepared (their images decoded)."""
        self._executor = executor
        self._stats = stats
        self._histograms = histograms
        self._wakeup: asyncio.Event | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._retired = False
        self._in_flight = 0
        self._in_order: deque[tuple[Job, JobResult | BaseException | None]] = deque()
        self._ran_at = (0, 0)
        """When this version's latest run ended: wall clock and the loop thread's CPU clock."""

    # ---- submitting ------------------------------------------------------------------------

    @contextlib.contextmanager
    def reserve(self, items: int, deadline_s: float | None = None) -> Iterator[None]:
        level = self.queue.default_level
        self._check_wait(items, level, self.queue.policy(level).timeout_for(0), deadline_s)
        self._reserved += items
        try:
            yield
        finally:
            self._reserved -= items

    def _check_wait(
        self, items: int, level: int, timeout_us: int, deadline_s: float | None
    ) -> None:
        """Refuse at once a request the queue ahead of it would hold past its deadline, its
        queue timeout (when that rejects) or the server's longest wait: under overload the
        excess gets its answer now instead of after waiting for nothing."""
        ahead = self.queue.items_ahead(level) + self._reserved
        if not ahead:
            return  # nothing ahead: it runs as soon as an instance is free
        limit = wait_limit(self._max_wait_ns, self.queue.policy(level), timeout_us, deadline_s)
        wait_ns = self._pace.wait_ns(ahead + items)
        refuse_if_late(self.name, f"{ahead} items are queued ahead of it", wait_ns, limit)

    def backlog_ns(self) -> float:
        """About how long what waits at the default level takes to get through (0 while the
        pace is unknown): a split server's front ends judge new requests by it."""
        ahead = self.queue.items_ahead(self.queue.default_level) + self._reserved
        return self._pace.wait_ns(ahead) if ahead else 0.0

    def item_ns(self) -> float:
        """About how long one more item adds to the wait (0 while unknown)."""
        return self._pace.wait_ns(1)

    def _ensure_started(self) -> asyncio.Event:
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self._batch_loop())
        return self._wakeup

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
        """Queue one request and wait for its own slice of a batch's outputs. A model without
        sequence batching ignores the request's sequence, as Triton does."""
        return await self.enqueue(feeds, items, output_names, priority, timeout_us, deadline_s)

    def enqueue(
        self,
        feeds: dict[str, np.ndarray],
        items: int,
        output_names: Sequence[str],
        priority: int = 0,
        timeout_us: int = 0,
        deadline_s: float | None = None,
        requests: int = 1,
    ) -> asyncio.Future[JobResult]:
        """Queue one job; the future gets its own slice of a batch's outputs. Call on the
        event loop's thread. `requests`: how many the job carries (a split server's front end
        merges some), which is what counts against the queue's bound."""
        wakeup = self._ensure_started()
        level = self.queue.level_of(priority)
        timeout = self.queue.policy(level).timeout_for(timeout_us)
        self._check_wait(items, level, timeout, deadline_s)
        now = time.perf_counter_ns()
        job = Job(
            feeds=feeds,
            items=items,
            signature=feeds_signature(feeds),
            output_names=tuple(output_names),
            level=level,
            enqueued_ns=now,
            timeout_at_ns=now + timeout * US if timeout else None,
            deadline_ns=now + int(deadline_s * 1e9) if deadline_s is not None else None,
            future=asyncio.get_running_loop().create_future(),
            requests=requests,
        )
        if tracing.enabled():
            record = request_context.current.get()
            job.span = record.span if record is not None else None
        if self._runs_inline(job, now):
            self._run_inline(job)
            return job.future
        self.queue.push(job)  # raises ServerBusy when the level is full
        if self.preserve_ordering:
            self._in_order.append((job, None))
        wakeup.set()
        return job.future

    # ---- one caller at a time ----------------------------------------------------------------

    def _runs_inline(self, job: Job, now: int) -> bool:
        """A request that finds its version quiet (nothing queued or running, the event loop
        asleep for a while since the latest run, no queue delay to wait for company) and its
        run short runs at once on this thread: handing it to an inference thread and back (two
        wake-ups, the interpreter lock passed twice) costs more than a small model's run.
        Under load it does not apply, and batches form as before."""
        if self._retired or self._in_flight or len(self.queue) or not self._idle:
            return False
        if self.delay_ns:
            return False
        wall_ns, cpu_ns = self._ran_at
        if (now - wall_ns) - (time.thread_time_ns() - cpu_ns) < LOOP_IDLE_NS:
            return False
        return 0 < self._pace.run_ns(job.items) <= INLINE_MAX_RUN_NS

    def _run_inline(self, job: Job) -> None:
        job.dispatched_ns = time.perf_counter_ns()  # its queue time: the checks since arrival
        if self.preserve_ordering:
            self._in_order.append((job, None))
        instance = self._idle.pop()
        self._in_flight += 1
        try:
            run = instance.run([job], list(job.output_names))
        except Exception as exc:
            self._finish(job, exc)
            return
        finally:
            self._run_ended(instance)
        self._completed([job], run)

    def _run_ended(self, instance: Instance) -> None:
        """On the event loop's thread, as a run ends: the instance is free again."""
        self._in_flight -= 1
        self._idle.append(instance)
        self._ran_at = (time.perf_counter_ns(), time.thread_time_ns())

    # ---- forming batches ---------------------------------------------------------------------

    def _finish(self, job: Job, outcome: JobResult | BaseException) -> None:
        if self.preserve_ordering:
            for i, (queued, _) in enumerate(self._in_order):
                if queued is job:
                    self._in_order[i] = (job, outcome)
                    break
            # Release answers only in arrival order.
            while self._in_order and self._in_order[0][1] is not None:
                ready_job, ready = self._in_order.popleft()
                self._settle(ready_job, ready)
        else:
            self._settle(job, outcome)

    @staticmethod
    def _settle(job: Job, outcome: JobResult | BaseException | None) -> None:
        if job.future.done():
            return  # the caller gave up (cancelled); its answer is dropped
        if isinstance(outcome, BaseException):
            job.future.set_exception(outcome)
        else:
            job.future.set_result(outcome)

    def _drop_stale(self, now: int) -> None:
        timed_out, past_deadline = self.queue.expire(now)
        for job in timed_out:
            waited_us = (now - job.enqueued_ns) // US
            self._finish(
                job,
                QueueTimeout(
                    f"request timed out after waiting {waited_us} us in the queue of model "
                    f"'{self.name}'"
                ),
            )
        for job in past_deadline:
            self._finish(
                job,
                DeadlineExceeded(
                    f"deadline passed while waiting in the queue of model '{self.name}'; "
                    "the request was not computed"
                ),
            )

    def _select(self, now: int) -> tuple[list[Job], int | None]:
        """The next batch, or no batch and when to look again (None: at the next arrival)."""
        chosen: list[Job] = []
        abandoned: list[Job] = []
        total = 0
        # Look a bounded way into the queue: a long queue must not make each batch slower.
        for scanned, job in enumerate(self.queue.in_order()):
            if scanned >= self._scan_limit:
                break
            if job.future.done():  # cancelled by its caller while waiting
                abandoned.append(job)
                continue
            if chosen and (not self.batching or job.signature != chosen[0].signature):
                if not self.batching:
                    break
                continue
            if total + job.items > self.max_batch_size:
                break
            chosen.append(job)
            total += job.items
            if total == self.max_batch_size:
                break
        for job in abandoned:
            self.queue.remove(job)
            self._finish(job, asyncio.CancelledError())
        if not chosen:
            return [], None
        if not self.batching or total >= self.max_batch_size:
            return chosen, None
        if self.preferred:
            reached, best = 0, 0
            for i, job in enumerate(chosen):
                reached += job.items
                if reached in self.preferred:
                    best = i + 1
            if best:
                return chosen[:best], None
        wake_at = chosen[0].enqueued_ns + self.delay_ns
        if now >= wake_at:
            return chosen, None
        return [], wake_at

    async def _batch_loop(self) -> None:
        assert self._wakeup is not None
        while not (self._retired and not len(self.queue) and not self._in_flight):
            now = time.perf_counter_ns()
            self._drop_stale(now)
            wake_at: int | None = None
            if self._idle and len(self.queue):
                batch, wake_at = self._select(now)
                if batch:
                    for job in batch:
                        self.queue.remove(job)
                        job.dispatched_ns = now
                    self._dispatch(self._idle.pop(), batch)
                    continue
            expiry = self.queue.next_expiry_ns()
            moments = [m for m in (wake_at, expiry) if m is not None]
            self._wakeup.clear()
            if moments:
                delay = max(min(moments) - time.perf_counter_ns(), 0) / 1e9
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), delay)
            else:
                await self._wakeup.wait()

    def _dispatch(self, instance: Instance, batch: list[Job]) -> None:
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._execute(instance, batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _execute(self, instance: Instance, batch: list[Job]) -> None:
        names = list(dict.fromkeys(n for job in batch for n in job.output_names))
        loop = asyncio.get_running_loop()
        try:
            run = await loop.run_in_executor(self._executor, instance.run, batch, names)
        except Exception as exc:
            for job in batch:
                self._finish(job, exc)
            return
        finally:
            self._run_ended(instance)
            assert self._wakeup is not None
            self._wakeup.set()
        self._completed(batch, run)

    def _completed(self, batch: list[Job], run: BatchRun) -> None:
        items = sum(job.items for job in batch)
        self._stats.record_execution(items, run.input_ns, run.infer_ns, run.output_ns)
        self._pace.record(items, run.input_ns + run.infer_ns + run.output_ns)
        if self._histograms is not None:
            self._histograms.observe_batch(run.input_ns + run.infer_ns + run.output_ns)
        if tracing.enabled():
            self._trace(batch, run, items)
        for job, outputs in zip(batch, run.per_job, strict=True):
            self._finish(
                job,
                JobResult(
                    outputs=outputs,
                    queue_ns=job.dispatched_ns - job.enqueued_ns,
                    batch_input_ns=run.input_ns,
                    infer_ns=run.infer_ns,
                    batch_output_ns=run.output_ns,
                    batch_items=items,
                ),
            )

    def _trace(self, batch: list[Job], run: BatchRun, items: int) -> None:
        finished = time.perf_counter_ns()
        run_started = run.started_ns + run.input_ns
        context = tracing.record_batch(
            self.name,
            [job.span for job in batch],
            items,
            batch[0].dispatched_ns,
            run_started,
            run_started + run.infer_ns,
            finished,
        )
        for job in batch:
            tracing.record_request_phases(
                job.span, job.enqueued_ns, job.dispatched_ns, finished, context
            )

    def retire(self) -> None:
        """The version was replaced or unloaded: finish what was accepted, then stop the loop."""
        self._retired = True
        if self._wakeup is not None:
            self._wakeup.set()
