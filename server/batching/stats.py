"""Per-model-version statistics with Triton's semantics.

`inference_count` counts items (batch elements), `execution_count` counts model executions, so
their ratio is the average batch size. Durations are nanoseconds, summed.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from ..protocol.types import REQUEST_DURATIONS, Pair, VersionStatistics


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns

    def pair(self) -> Pair:
        return (self.count, self.ns)


@dataclass
class BatchDurations:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass(frozen=True)
class RequestTiming:
    """Where one request's time went, as measured by the data plane and scheduler."""

    queue_ns: int
    compute_input_ns: int
    compute_infer_ns: int
    compute_output_ns: int
    batch_items: int = 1
    """Items in the batch the request ran in."""


class ModelStats:
    """Thread-safe counters for one model version."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.last_inference_ms = 0
        self.inference_count = 0
        self.execution_count = 0
        self.success = Duration()
        self.fail = Duration()
        self.queue = Duration()
        self.compute_input = Duration()
        self.compute_infer = Duration()
        self.compute_output = Duration()
        self.cache_hit = Duration()
        """Requests answered from the response cache, and the time their lookups took."""
        self.cache_miss = Duration()
        """Lookups that found nothing, with the time they and keeping the answer took."""
        self.batches: dict[int, BatchDurations] = {}

    def record_execution(
        self, batch_size: int, input_ns: int, infer_ns: int, output_ns: int
    ) -> None:
        """One run of the model over `batch_size` items."""
        with self._lock:
            self.inference_count += batch_size
            self.execution_count += 1
            self.last_inference_ms = time.time_ns() // 1_000_000
            batch = self.batches.setdefault(batch_size, BatchDurations())
            batch.compute_input.add(input_ns)
            batch.compute_infer.add(infer_ns)
            batch.compute_output.add(output_ns)

    def record_success(self, total_ns: int, timing: RequestTiming) -> None:
        """One request answered; its share of queue and compute time."""
        with self._lock:
            self.success.add(total_ns)
            self.queue.add(timing.queue_ns)
            self.compute_input.add(timing.compute_input_ns)
            self.compute_infer.add(timing.compute_infer_ns)
            self.compute_output.add(timing.compute_output_ns)

    def record_cache_hit(self, total_ns: int, lookup_ns: int) -> None:
        """One request answered from the response cache: a success with no queue or run."""
        with self._lock:
            self.success.add(total_ns)
            self.cache_hit.add(lookup_ns)

    def record_cache_miss(self, ns: int) -> None:
        with self._lock:
            self.cache_miss.add(ns)

    def record_failure(self, total_ns: int) -> None:
        with self._lock:
            self.fail.add(total_ns)

    def _request_durations(self) -> tuple[Duration, ...]:
        return (
            self.success, self.fail, self.queue, self.compute_input, self.compute_infer,
            self.compute_output, self.cache_hit, self.cache_miss,
        )  # fmt: skip

    def request_totals(self) -> list[list[int]]:
        """The per-request sums as [count, ns] pairs (a split server's front ends send them)."""
        with self._lock:
            return [[d.count, d.ns] for d in self._request_durations()]

    def add_request_totals(self, totals: list[list[int]]) -> None:
        """Adds another process's request_totals()."""
        with self._lock:
            for duration, (count, ns) in zip(self._request_durations(), totals, strict=True):
                duration.add(ns, count)

    def average_batch(self) -> float:
        """Items per execution so far (0 before the first)."""
        return self.inference_count / self.execution_count if self.execution_count else 0.0

    def view(self, name: str, version: str) -> VersionStatistics:
        with self._lock:
            return VersionStatistics(
                name=name,
                version=version,
                last_inference=self.last_inference_ms,
                inference_count=self.inference_count,
                execution_count=self.execution_count,
                requests={
                    key: duration.pair()
                    for key, duration in zip(
                        REQUEST_DURATIONS, self._request_durations(), strict=True
                    )
                },
                batches={
                    size: {
                        "compute_input": b.compute_input.pair(),
                        "compute_infer": b.compute_infer.pair(),
                        "compute_output": b.compute_output.pair(),
                    }
                    for size, b in sorted(self.batches.items())
                },
            )
