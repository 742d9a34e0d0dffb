"""The sequence batcher: Triton's `sequence_batching` for stateful models, in front of a
version's instances.

Each request belongs to a sequence (its `sequence_id`); the first sets `sequence_start`, the
last `sequence_end`. A sequence takes one of the model's slots while it is active (max_batch_size
per instance with the direct strategy, max_candidate_sequences with the oldest), and its
requests run one after another in arrival order; requests of different sequences that are
ready at once share a batch. The server fills the model's control inputs for each row (START,
END, READY, CORRID) and keeps its implicit state: a state output of one request is the
matching state input of the sequence's next, zeros at the start. A new sequence past the
slots waits for one to free (the backlog, bounded by the queue size); a sequence idle for
max_sequence_idle_microseconds is released, as is every sequence when the version is retired.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from ..observability.histograms import VersionHistograms
from ..protocol.errors import (
    DeadlineExceeded,
    InferenceFailed,
    InvalidInput,
    ModelUnavailable,
    ServerBusy,
)
from ..protocol.sequence_config import SequenceConfig, SequenceStep
from .instance import Instance
from .queue import Job, feeds_signature
from .scheduler import JobResult
from .stats import ModelStats

log = logging.getLogger(__name__)


@dataclass
class _Request:
    feeds: dict[str, np.ndarray]
    output_names: tuple[str, ...]
    step: SequenceStep
    enqueued_ns: int
    deadline_ns: int | None
    future: asyncio.Future[JobResult]


@dataclass
class _Sequence:
    id: int | str
    pending: deque[_Request] = field(default_factory=deque)
    state: dict[str, np.ndarray] = field(default_factory=dict)
    """Its latest state by state input name; empty until its first request has run."""
    running: bool = False
    last_ns: int = 0


class _Backlog:
    """What the queue metrics read: requests waiting, and how many may."""

    def __init__(self, scheduler: SequenceScheduler, capacity: int) -> None:
        self._scheduler = scheduler
        self.capacity = capacity

    def __len__(self) -> int:
        return self._scheduler.waiting_requests()


class SequenceScheduler:
    """Slots, state and batches of one sequence model version."""

    batching = True

    def __init__(
        self,
        name: str,
        config: mc.ModelConfig,
        sequences: SequenceConfig,
        instances: Sequence[Instance],
        executor: Executor,
        stats: ModelStats,
        max_backlog: int,
        histograms: VersionHistograms | None = None,
    ) -> None:
        self.name = name
        self.config = sequences
        self.max_batch_size = max(config.max_batch_size, 1)
        self._idle: list[Instance] = list(instances)
        self._executor = executor
        self._stats = stats
        self._histograms = histograms
        self._active: OrderedDict[int | str, _Sequence] = OrderedDict()
        self._waiting: OrderedDict[int | str, _Sequence] = OrderedDict()
        """New sequences past the slots, oldest first: each holds its START request."""
        self.queue = _Backlog(self, max_backlog)
        self._wakeup: asyncio.Event | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._retired = False
        self._corrid_type = next(
            (c.datatype for c in sequences.controls if c.kind == "corrid"), None
        )

    # ---- submitting ------------------------------------------------------------------------

    @contextlib.contextmanager
    def reserve(self, items: int, deadline_s: float | None = None) -> Iterator[None]:
        yield  # the Vision API's images are not sequences: nothing to hold back

    def backlog_ns(self) -> float:
        return 0.0  # sequences are not refused by the wait ahead of them: they wait for slots

    def item_ns(self) -> float:
        return 0.0

    def waiting_requests(self) -> int:
        sequences = [*self._active.values(), *self._waiting.values()]
        return sum(len(s.pending) for s in sequences)

    def _checked(self, sequence: SequenceStep | None, items: int) -> SequenceStep:
        if sequence is None or sequence.id in (0, ""):
            raise InvalidInput(
                f"model '{self.name}' is a sequence model: each request needs a sequence_id "
                "(a non-zero integer or a non-empty string), its first also sequence_start"
            )
        if items != 1:
            raise InvalidInput(
                f"model '{self.name}' is a sequence model: a request carries one step of one "
                f"sequence (batch size 1), got batch size {items}"
            )
        corrid = self._corrid_type
        if corrid not in (None, "BYTES") and isinstance(sequence.id, str):
            raise InvalidInput(
                f"model '{self.name}' takes its sequence id in a {corrid} CORRID input: its "
                f"sequence ids must be integers, got the string {sequence.id!r}"
            )
        if self._retired:
            raise ModelUnavailable(
                f"sequence {sequence.id!r} of model '{self.name}' ended: the model version "
                "was unloaded or replaced"
            )
        return sequence

    def _not_active(self, step: SequenceStep) -> InvalidInput:
        idle_us = self.config.idle_ns // 1000
        return InvalidInput(
            f"sequence {step.id!r} is not active in model '{self.name}': its first request must "
            f"set sequence_start, and a sequence idle for longer than "
            f"max_sequence_idle_microseconds ({idle_us} us) is released, as are all when the "
            "version is unloaded or replaced (or, behind a proxy, when the server holding it "
            "went away); start it again with sequence_start"
        )

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
        step = self._checked(sequence, items)
        now = time.perf_counter_ns()
        request = _Request(
            feeds=feeds,
            output_names=tuple(output_names),
            step=step,
            enqueued_ns=now,
            deadline_ns=now + int(deadline_s * 1e9) if deadline_s is not None else None,
            future=asyncio.get_running_loop().create_future(),
        )
        self._place(request)
        self._wake()
        return await request.future

    def _place(self, request: _Request) -> None:
        step = request.step
        sequence = self._active.get(step.id) or self._waiting.get(step.id)
        if sequence is not None:
            sequence.pending.append(request)  # a START again restarts it when its turn comes
            return
        if not step.start:
            raise self._not_active(step)
        sequence = _Sequence(step.id, deque([request]), last_ns=request.enqueued_ns)
        if len(self._active) < self.config.max_sequences:
            self._active[step.id] = sequence
            return
        if self.queue.capacity and len(self._waiting) >= self.queue.capacity:
            raise ServerBusy(
                f"model '{self.name}': all {self.config.max_sequences} sequence slots are in "
                f"use and {len(self._waiting)} new sequences already wait for one (the "
                "backlog's limit, max_queue_size); end sequences with sequence_end or retry"
            )
        self._waiting[step.id] = sequence

    def _wake(self) -> None:
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self._batch_loop())
        self._wakeup.set()

    # ---- slots -------------------------------------------------------------------------------

    def _release(self, sequence: _Sequence) -> None:
        """Its slot goes to the oldest waiting sequence; its state is dropped."""
        self._active.pop(sequence.id, None)
        sequence.state.clear()
        while self._waiting and len(self._active) < self.config.max_sequences:
            waiting_id, waiting = self._waiting.popitem(last=False)
            self._active[waiting_id] = waiting

    def _release_idle(self, now: int) -> int | None:
        """Releases sequences idle past the limit; ns until the next may be, or None."""
        soonest: int | None = None
        for sequence in list(self._active.values()):
            if sequence.running or sequence.pending:
                continue
            # Once retired, a sequence goes as soon as what it had queued has run.
            due = sequence.last_ns + (0 if self._retired else self.config.idle_ns)
            if due <= now:
                log.info(
                    "model '%s': sequence %r idle for %d us, released",
                    self.name,
                    sequence.id,
                    (now - sequence.last_ns) // 1000,
                )
                self._release(sequence)
            elif soonest is None or due - now < soonest:
                soonest = due - now
        return soonest

    # ---- forming batches ---------------------------------------------------------------------

    def _ready(self, now: int) -> list[_Sequence]:
        """Active sequences whose next request can run, oldest request first; requests whose
        caller left or whose deadline passed are dropped (their sequence's state unchanged)."""
        ready = []
        for sequence in self._active.values():
            if sequence.running:
                continue
            while sequence.pending:
                head = sequence.pending[0]
                if head.future.done():
                    sequence.pending.popleft()  # cancelled by its caller
                elif head.deadline_ns is not None and head.deadline_ns <= now:
                    sequence.pending.popleft()
                    head.future.set_exception(
                        DeadlineExceeded(
                            f"deadline passed while sequence {head.step.id!r} waited in model "
                            f"'{self.name}'; the request was not computed"
                        )
                    )
                else:
                    ready.append(sequence)
                    break
        ready.sort(key=lambda s: s.pending[0].enqueued_ns)
        return ready

    async def _batch_loop(self) -> None:
        assert self._wakeup is not None
        wakeup = self._wakeup
        while True:
            wakeup.clear()
            now = time.perf_counter_ns()
            next_idle = self._release_idle(now)
            ready = self._ready(now)
            wait_ns: int | None = next_idle
            if ready and self._idle:
                oldest_wait = now - ready[0].pending[0].enqueued_ns
                if len(ready) < self.max_batch_size and oldest_wait < self.config.delay_ns:
                    wait_ns = self.config.delay_ns - oldest_wait  # for more sequences to join
                else:
                    self._start(ready[: self.max_batch_size])
                    continue
            if self._retired and not self._active and not self._waiting and not self._running:
                return
            timeout = wait_ns / 1e9 if wait_ns is not None else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), timeout)

    def _start(self, batch: list[_Sequence]) -> None:
        signature = feeds_signature(batch[0].pending[0].feeds)
        batch = [s for s in batch if feeds_signature(s.pending[0].feeds) == signature]
        instance = self._idle.pop()
        for sequence in batch:
            sequence.running = True
        requests = [s.pending.popleft() for s in batch]
        task = asyncio.get_running_loop().create_task(self._execute(instance, batch, requests))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    def _job(self, sequence: _Sequence, request: _Request, names: tuple[str, ...]) -> Job:
        """The request's row as a job: its inputs, the controls for its step and its
        sequence's state. The instance merges the rows of a batch and slices the answers back."""
        feeds = dict(request.feeds)
        for control in self.config.controls:
            feeds[control.name] = control.values([_control_value(control.kind, request.step)])
        for state in self.config.states:
            kept = sequence.state.get(state.input_name)
            feeds[state.input_name] = (
                kept if kept is not None and not request.step.start else state.initial()
            )
        return Job(
            feeds=feeds,
            items=1,
            signature=(),
            output_names=names,
            level=0,
            enqueued_ns=request.enqueued_ns,
            timeout_at_ns=None,
            deadline_ns=request.deadline_ns,
            future=request.future,
        )

    async def _execute(
        self, instance: Instance, batch: list[_Sequence], requests: list[_Request]
    ) -> None:
        items = len(requests)
        wanted = list(dict.fromkeys(n for r in requests for n in r.output_names))
        names = wanted + [s.output_name for s in self.config.states if s.output_name not in wanted]
        dispatched = time.perf_counter_ns()
        try:
            jobs = [self._job(s, r, tuple(names)) for s, r in zip(batch, requests, strict=True)]
            loop = asyncio.get_running_loop()
            run = await loop.run_in_executor(self._executor, instance.run, jobs, names)
            for outputs in run.per_job:
                self._check_states(outputs)
        except Exception as exc:
            for request in requests:
                if not request.future.done():
                    request.future.set_exception(exc)
            self._after(batch, requests, instance)
            return
        self._stats.record_execution(items, run.input_ns, run.infer_ns, run.output_ns)
        if self._histograms is not None:
            self._histograms.observe_batch(run.input_ns + run.infer_ns + run.output_ns)
        for sequence, request, outputs in zip(batch, requests, run.per_job, strict=True):
            # Copies: a row kept as a view would hold the whole batch's output alive.
            sequence.state = {
                s.input_name: outputs[s.output_name].copy() for s in self.config.states
            }
            if not request.future.done():
                request.future.set_result(
                    JobResult(
                        outputs={n: outputs[n] for n in request.output_names},
                        queue_ns=dispatched - request.enqueued_ns,
                        batch_input_ns=run.input_ns,
                        infer_ns=run.infer_ns,
                        batch_output_ns=run.output_ns,
                        batch_items=items,
                    )
                )
        self._after(batch, requests, instance)

    def _check_states(self, outputs: dict[str, np.ndarray]) -> None:
        for state in self.config.states:
            shape = outputs[state.output_name].shape
            if tuple(shape) != (1, *state.dims):
                raise InferenceFailed(
                    f"model '{self.name}': state output '{state.output_name}' has shape "
                    f"{list(shape)} for one row, the config's state dims are {list(state.dims)}"
                )

    def _after(self, batch: list[_Sequence], requests: list[_Request], instance: Instance) -> None:
        now = time.perf_counter_ns()
        for sequence, request in zip(batch, requests, strict=True):
            sequence.running = False
            sequence.last_ns = now
            if request.step.end:
                self._release(sequence)
        self._idle.append(instance)
        self._wake()

    def retire(self) -> None:
        """The version was replaced or unloaded: what is queued runs, waiting sequences end
        with an error, and no sequence carries on into the next version."""
        self._retired = True
        for sequence in self._waiting.values():
            for request in sequence.pending:
                if not request.future.done():
                    request.future.set_exception(
                        ModelUnavailable(
                            f"sequence {sequence.id!r} of model '{self.name}' ended before it "
                            "started: the model version was unloaded or replaced"
                        )
                    )
        self._waiting.clear()
        for sequence in list(self._active.values()):
            if not sequence.running and not sequence.pending:
                self._release(sequence)
        if self._wakeup is not None:
            self._wakeup.set()


def _control_value(kind: str, step: SequenceStep) -> bool | int | str:
    """What a control input holds for a request's row: its flags, READY (every row of a batch
    holds a request), or the sequence's id."""
    return {"start": step.start, "end": step.end, "ready": True, "corrid": step.id}[kind]
