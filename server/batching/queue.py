"""The waiting room of one model version: jobs by priority level, with Triton's queue policy.

Priority level 1 is served first. Each level has a bounded size (back-pressure) and a timeout;
a job that outlives its timeout is either rejected or, with `timeout_action: DELAY`, moved behind
every job that has not timed out.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from ..protocol.errors import InvalidInput, ServerBusy

US = 1_000  # nanoseconds per microsecond


def feeds_signature(feeds: dict[str, np.ndarray]) -> tuple:
    """Input names, dtypes and non-batch shapes: what arrays must share to be batched together."""
    return tuple((name, array.dtype.str, array.shape[1:]) for name, array in feeds.items())


@dataclass(frozen=True)
class QueuePolicy:
    max_queue_size: int
    timeout_us: int
    allow_timeout_override: bool
    delay_on_timeout: bool

    @classmethod
    def from_config(cls, policy: mc.ModelQueuePolicy, default_max_queue_size: int) -> QueuePolicy:
        return cls(
            max_queue_size=policy.max_queue_size or default_max_queue_size,
            timeout_us=policy.default_timeout_microseconds,
            allow_timeout_override=policy.allow_timeout_override,
            delay_on_timeout=policy.timeout_action == mc.ModelQueuePolicy.DELAY,
        )

    def timeout_for(self, requested_us: int) -> int:
        """The timeout a job gets: the request's may shorten the default when allowed
        (a default of 0 means none, so then any requested timeout applies)."""
        shorter = self.timeout_us == 0 or requested_us < self.timeout_us
        if requested_us > 0 and self.allow_timeout_override and shorter:
            return requested_us
        return self.timeout_us


@dataclass(eq=False)
class Job:
    """One request waiting for, or riding in, a batch."""

    feeds: dict[str, np.ndarray]
    items: int
    signature: tuple
    """Input names, dtypes and non-batch shapes: only jobs with equal signatures batch together."""
    output_names: tuple[str, ...]
    level: int
    enqueued_ns: int
    timeout_at_ns: int | None
    deadline_ns: int | None
    """When the caller's gRPC deadline passes: the job is dropped, never computed."""
    future: asyncio.Future
    delayed: bool = False
    queued: bool = False
    dispatched_ns: int = 0
    span: Any = None
    """The request's trace span, when tracing is on: its batch links to it."""
    requests: int = 1
    """Requests this job carries (a split server's front end merges some): what it counts for
    against max_queue_size."""


@dataclass
class _Level:
    policy: QueuePolicy
    fresh: deque[Job] = field(default_factory=deque)
    delayed: deque[Job] = field(default_factory=deque)
    requests: int = 0
    items: int = 0
    """Items (batch rows) of the fresh jobs: what the instances must get through first."""

    def __len__(self) -> int:
        """Requests waiting (a job may carry several)."""
        return self.requests


class JobQueue:
    def __init__(self, model: str, batching: mc.ModelDynamicBatching | None, default_max: int):
        self._model = model
        levels = batching.priority_levels if batching is not None else 0
        self.level_count = max(levels, 1)
        self.default_level = (batching.default_priority_level if batching else 0) or 1
        if levels and not 1 <= self.default_level <= levels:
            self.default_level = levels  # Triton requires it in range; fall back to lowest
        default_policy = batching.default_queue_policy if batching else mc.ModelQueuePolicy()
        self._levels: dict[int, _Level] = {}
        for level in range(1, self.level_count + 1):
            specific = batching.priority_queue_policy.get(level) if batching else None
            policy = specific if specific is not None else default_policy
            self._levels[level] = _Level(QueuePolicy.from_config(policy, default_max))
        self._size = 0
        # (moment, tie-breaker, is_deadline, job): a job's timeout and deadline, soonest first.
        # Entries of jobs that left the queue are skipped when they surface.
        self._expiries: list[tuple[int, int, bool, Job]] = []
        self._tie = itertools.count()

    def __len__(self) -> int:
        return self._size

    def level_of(self, priority: int) -> int:
        if priority == 0:
            return self.default_level
        if not 1 <= priority <= self.level_count:
            raise InvalidInput(
                f"priority {priority} is outside 1..{self.level_count} for model '{self._model}' "
                "(0 means the default level)"
            )
        return priority

    @property
    def capacity(self) -> int:
        """Requests that may wait at once, over every priority level."""
        return sum(level.policy.max_queue_size for level in self._levels.values())

    def items_ahead(self, level: int) -> int:
        """Items a new job at `level` would wait behind: every fresh job at that level or a
        more urgent one."""
        return sum(self._levels[above].items for above in range(1, level + 1))

    def policy(self, level: int) -> QueuePolicy:
        return self._levels[level].policy

    def push(self, job: Job) -> None:
        level = self._levels[job.level]
        if len(level) + job.requests > level.policy.max_queue_size:
            raise ServerBusy(
                f"model '{self._model}' queue is full: {len(level)} requests waiting at priority "
                f"{job.level}, max_queue_size {level.policy.max_queue_size}"
            )
        level.fresh.append(job)
        job.queued = True
        level.requests += job.requests
        level.items += job.items
        self._size += job.requests
        if job.timeout_at_ns is not None:
            heapq.heappush(self._expiries, (job.timeout_at_ns, next(self._tie), False, job))
        if job.deadline_ns is not None:
            heapq.heappush(self._expiries, (job.deadline_ns, next(self._tie), True, job))

    def in_order(self) -> Iterator[Job]:
        """Jobs in serving order: fresh ones by priority level, then the delayed ones."""
        for level in self._levels.values():
            yield from level.fresh
        for level in self._levels.values():
            yield from level.delayed

    def remove(self, job: Job) -> None:
        level = self._levels[job.level]
        queue = level.delayed if job.delayed else level.fresh
        if queue and queue[0] is job:
            queue.popleft()  # the usual case: batches take the head
        else:
            queue.remove(job)
        if not job.delayed:
            level.items -= job.items
        job.queued = False
        level.requests -= job.requests
        self._size -= job.requests

    def expire(self, now_ns: int) -> tuple[list[Job], list[Job]]:
        """Jobs whose queue timeout (rejected) or gRPC deadline passed, removed from the queue.
        A timed-out job of a DELAY level stays, moved behind every job that has not timed out."""
        timed_out: list[Job] = []
        past_deadline: list[Job] = []
        while self._expiries and self._expiries[0][0] <= now_ns:
            _, _, is_deadline, job = heapq.heappop(self._expiries)
            if not job.queued:
                continue
            if is_deadline:
                self.remove(job)
                past_deadline.append(job)
                continue
            level = self._levels[job.level]
            if job.delayed:
                continue
            if level.policy.delay_on_timeout:
                level.fresh.remove(job)
                level.items -= job.items
                job.delayed = True
                level.delayed.append(job)
            else:
                self.remove(job)
                timed_out.append(job)
        return timed_out, past_deadline

    def next_expiry_ns(self) -> int | None:
        """The earliest moment a waiting job's timeout or deadline passes, if any."""
        while self._expiries and not self._expiries[0][3].queued:
            heapq.heappop(self._expiries)
        return self._expiries[0][0] if self._expiries else None


class NoQueue:
    """The queue of a scheduler where nothing waits (an ensemble, whose steps queue in their own
    models; a split server's generator, whose engine keeps the queue): empty, no capacity."""

    capacity = 0

    def __len__(self) -> int:
        return 0
