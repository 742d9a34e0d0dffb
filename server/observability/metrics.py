"""Prometheus metrics on their own HTTP port (default 8002, as Triton), read from the models'
statistics at scrape time, so the request path pays nothing for them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from prometheus_client import start_http_server
from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..protocol.types import IndexEntry
from ..settings import LOOPBACK_HOSTS
from .gpu_metrics import GpuCollector
from .histograms import HistogramCollector

log = logging.getLogger(__name__)

_COUNTERS = {
    "request_success": "Requests answered",
    "request_failure": "Requests that failed (bad input, timeout, internal error)",
    "inference_count": "Items inferred (a request of batch 4 counts 4)",
    "execution_count": "Model executions (inference_count / execution_count = average batch)",
}
_DURATIONS = {
    "request": "success",
    "queue": "queue",
    "compute_input": "compute_input",
    "compute_infer": "compute_infer",
    "compute_output": "compute_output",
}


class ServedModels(Protocol):
    """What the exporter reads of the models (the model manager): observability sits below
    the models, so it names only what it reads."""

    def ready_models(self) -> list[Any]:
        """Loaded versions: name, version, stats (a view), scheduler (its queue)."""
        ...

    def index(self, ready_only: bool = False) -> list[IndexEntry]: ...

    @property
    def server_ready(self) -> bool: ...


class ModelCollector(Collector):
    def __init__(self, manager: ServedModels) -> None:
        self._manager = manager

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        labels = ["model", "version"]
        counters = {
            key: CounterMetricFamily(f"deepserve_inference_{key}", text, labels=labels)
            for key, text in _COUNTERS.items()
        }
        durations = {
            key: CounterMetricFamily(
                f"deepserve_{key}_duration_us",
                f"Cumulative {key} time, microseconds",
                labels=labels,
            )
            for key in _DURATIONS
        }
        queued = GaugeMetricFamily(
            "deepserve_queue_size", "Requests waiting for an instance now", labels=labels
        )
        capacity = GaugeMetricFamily(
            "deepserve_queue_capacity",
            "Requests that may wait at once (max_queue_size over the priority levels)",
            labels=labels,
        )
        ready = GaugeMetricFamily(
            "deepserve_model_ready",
            "1 when the version serves; a model of the repository that serves no version shows "
            '0 with version ""',
            labels=labels,
        )
        for model in self._manager.ready_models():
            key = [model.name, str(model.version)]
            stats = model.stats.view(model.name, key[1])
            requests = stats.requests
            counters["request_success"].add_metric(key, requests["success"][0])
            counters["request_failure"].add_metric(key, requests["fail"][0])
            counters["inference_count"].add_metric(key, stats.inference_count)
            counters["execution_count"].add_metric(key, stats.execution_count)
            for name, field in _DURATIONS.items():
                durations[name].add_metric(key, requests[field][1] / 1000)
            queued.add_metric(key, len(model.scheduler.queue))
            capacity.add_metric(key, model.scheduler.queue.capacity)
            ready.add_metric(key, 1)
        serving = {model.name for model in self._manager.ready_models()}
        for name in sorted({row.name for row in self._manager.index()} - serving):
            ready.add_metric([name, ""], 0)
        server_ready = GaugeMetricFamily("deepserve_server_ready", "1 when ServerReady is true")
        server_ready.add_metric([], 1 if self._manager.server_ready else 0)
        yield from counters.values()
        yield from durations.values()
        yield queued
        yield capacity
        yield ready
        yield server_ready


class BeforeScrape(Collector):
    """Runs a function at the start of every scrape (a split server's engine gathers what its
    front ends hold); collects nothing itself."""

    def __init__(self, refresh: Callable[[], None]) -> None:
        self._refresh = refresh

    def describe(self) -> list[Metric]:
        return []  # registering then does not call collect()

    def collect(self) -> Iterator[Metric]:
        self._refresh()
        return iter(())


def serve_metrics(
    manager: ServedModels, host: str, port: int, before_scrape: Callable[[], None] | None = None
) -> None:
    """Start the /metrics HTTP endpoint in a background thread (port 0: no metrics)."""
    if port == 0:
        log.info("Prometheus metrics off (--metrics-port 0)")
        return
    if before_scrape is not None:
        REGISTRY.register(BeforeScrape(before_scrape))
    REGISTRY.register(ModelCollector(manager))
    REGISTRY.register(HistogramCollector())
    gpus = GpuCollector.if_available()
    if gpus is not None:
        REGISTRY.register(gpus)
    start_http_server(port, addr=host)
    if host in LOOPBACK_HOSTS:
        log.info("Prometheus metrics on http://%s:%d/metrics (this host only)", host, port)
    else:
        log.warning(
            "Prometheus metrics on http://%s:%d/metrics, open to other hosts without "
            "authentication (--metrics-host 127.0.0.1 keeps them on this host)",
            host,
            port,
        )
