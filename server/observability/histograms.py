"""Latency and batch-size histograms, and call counts by RPC and outcome, exported through
prometheus-client at scrape time.

Observations happen on the event loop's thread, a list index and two additions each, so the
request path pays about a microsecond for them (prometheus-client's own Histogram takes a
lock per bucket update, several microseconds a request at thousands of requests a second).
Buckets span both a sub-millisecond CPU classifier and a 100 ms detector. Labels are bounded by
design: model and version come from the repository (an unknown model counts as ""), rpc from the
services' method names, code from the status codes.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)

FAMILIES = {
    "request": (
        "deepserve_request_duration_seconds",
        "Answered requests, from the data plane receiving them to the answer encoded",
        LATENCY_BUCKETS,
    ),
    "queue": (
        "deepserve_queue_duration_seconds",
        "Time answered requests waited in the model's queue for a batch",
        LATENCY_BUCKETS,
    ),
    "compute": (
        "deepserve_batch_compute_duration_seconds",
        "Model executions: merge, ONNX Runtime run and split of one batch",
        LATENCY_BUCKETS,
    ),
    "batch_size": (
        "deepserve_request_batch_size",
        "Items in the batch each answered request ran in",
        BATCH_BUCKETS,
    ),
    "first_token": (
        "deepserve_time_to_first_token_seconds",
        "Text generators: from a request's arrival to its first token decoded",
        LATENCY_BUCKETS,
    ),
}
ONLY_WHEN_SEEN = {"first_token"}
"""Families most versions never observe (not generators): their series appear once used."""


class Histogram:
    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        running: float = 0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip([*self.bounds, float("inf")], self.counts, strict=True):
            running += count
            buckets.append(("+Inf" if bound == float("inf") else str(float(bound)), running))
        return buckets


_versions: dict[tuple[str, str], VersionHistograms] = {}
_calls: dict[tuple[str, str, str], int] = {}


class RequestHistograms(Protocol):
    """A version's request histograms: observed here, or (a split server's front end) by the
    engine from the statistics it is sent."""

    def observe_request(self, total_ns: int, queue_ns: int, batch_items: int) -> None: ...

    def remove(self) -> None: ...


class VersionHistograms:
    """One model version's histograms. A reload that keeps the version keeps its series."""

    def __init__(self, labels: tuple[str, str]) -> None:
        self.labels = labels
        self.request = Histogram(LATENCY_BUCKETS)
        self.queue = Histogram(LATENCY_BUCKETS)
        self.compute = Histogram(LATENCY_BUCKETS)
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.first_token = Histogram(LATENCY_BUCKETS)

    @classmethod
    def of(cls, model: str, version: int) -> VersionHistograms:
        labels = (model, str(version))
        found = _versions.get(labels)
        if found is None:
            found = _versions[labels] = cls(labels)
        return found

    def observe_request(self, total_ns: int, queue_ns: int, batch_items: int) -> None:
        self.request.observe(total_ns / 1e9)
        self.queue.observe(queue_ns / 1e9)
        self.batch_size.observe(batch_items)

    def observe_batch(self, compute_ns: int) -> None:
        self.compute.observe(compute_ns / 1e9)

    def observe_first_token(self, ns: int) -> None:
        self.first_token.observe(ns / 1e9)

    def request_counts(self) -> list[list[float]]:
        """The per-request histograms' bucket counts and sums (a split server's front ends
        send them to the engine)."""
        return [[*h.counts, h.total] for h in (self.request, self.queue, self.batch_size)]

    def add_request_counts(self, counts: list[list[float]]) -> None:
        for histogram, added in zip(
            (self.request, self.queue, self.batch_size), counts, strict=True
        ):
            for i, count in enumerate(added[:-1]):
                histogram.counts[i] += int(count)
            histogram.total += added[-1]

    def remove(self) -> None:
        """The version is gone: its series go too, so label sets do not pile up."""
        if _versions.get(self.labels) is self:
            del _versions[self.labels]


_call_listener: Callable[[], None] | None = None


def listen_to_calls(listener: Callable[[], None] | None) -> None:
    """`listener` is told of every call counted from now on (a split server's front end sends
    the counts on to the engine); None: nobody is."""
    global _call_listener
    _call_listener = listener


def count_call(rpc: str, model: str, code: str, count: int = 1) -> None:
    key = (rpc, model, code)
    _calls[key] = _calls.get(key, 0) + count
    if _call_listener is not None:
        _call_listener()


def call_counts() -> dict[tuple[str, str, str], int]:
    """The calls counted so far in this process (a split server's front ends send them on)."""
    return dict(_calls)


class HistogramCollector(Collector):
    def collect(self) -> Iterator[HistogramMetricFamily | CounterMetricFamily]:
        versions = list(_versions.values())
        for key, (name, documentation, _) in FAMILIES.items():
            family = HistogramMetricFamily(name, documentation, labels=["model", "version"])
            for histogram in versions:
                series: Histogram = getattr(histogram, key)
                if key in ONLY_WHEN_SEEN and not any(series.counts):
                    continue
                family.add_metric(list(histogram.labels), series.cumulative(), series.total)
            yield family
        calls = CounterMetricFamily(
            "deepserve_requests",
            "Calls by RPC, model and outcome (gRPC status code name)",
            labels=["rpc", "model", "code"],
        )
        for (rpc, model, code), count in sorted(_calls.items()):
            calls.add_metric([rpc, model, code], count)
        yield calls
