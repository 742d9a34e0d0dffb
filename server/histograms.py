"""Latency and batch-size histograms, and request counts by RPC and outcome (prometheus-client).

Buckets span both a sub-millisecond CPU classifier and a 100 ms detector. Labels are bounded by
design: model and version come from the repository (never from what a caller typed: an unknown
model is counted as ""), rpc from the services' method names, code from the status codes.
"""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Histogram

LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
VERSION_LABELS = ("model", "version")

REQUEST_SECONDS = Histogram(
    "deepserve_request_duration_seconds",
    "Answered requests, from the data plane receiving them to the answer encoded",
    VERSION_LABELS,
    buckets=LATENCY_BUCKETS,
)
QUEUE_SECONDS = Histogram(
    "deepserve_queue_duration_seconds",
    "Time answered requests waited in the model's queue for a batch",
    VERSION_LABELS,
    buckets=LATENCY_BUCKETS,
)
BATCH_COMPUTE_SECONDS = Histogram(
    "deepserve_batch_compute_duration_seconds",
    "Model executions: merge, ONNX Runtime run and split of one batch",
    VERSION_LABELS,
    buckets=LATENCY_BUCKETS,
)
REQUEST_BATCH_SIZE = Histogram(
    "deepserve_request_batch_size",
    "Items in the batch each answered request ran in",
    VERSION_LABELS,
    buckets=BATCH_BUCKETS,
)
REQUESTS = Counter(
    "deepserve_requests",
    "Calls by RPC, model and outcome (gRPC status code name)",
    ("rpc", "model", "code"),
)


class VersionHistograms:
    """One model version's histogram children, looked up once instead of on every request."""

    def __init__(self, model: str, version: int) -> None:
        self._labels = (model, str(version))
        self.request = REQUEST_SECONDS.labels(*self._labels)
        self.queue = QUEUE_SECONDS.labels(*self._labels)
        self.compute = BATCH_COMPUTE_SECONDS.labels(*self._labels)
        self.batch_size = REQUEST_BATCH_SIZE.labels(*self._labels)

    def observe_request(self, total_ns: int, queue_ns: int, batch_items: int) -> None:
        self.request.observe(total_ns / 1e9)
        self.queue.observe(queue_ns / 1e9)
        self.batch_size.observe(batch_items)

    def observe_batch(self, compute_ns: int) -> None:
        self.compute.observe(compute_ns / 1e9)

    def remove(self) -> None:
        """The version is gone: its series go too, so label sets do not pile up over reloads."""
        for family in (REQUEST_SECONDS, QUEUE_SECONDS, BATCH_COMPUTE_SECONDS, REQUEST_BATCH_SIZE):
            with contextlib.suppress(KeyError):
                family.remove(*self._labels)
