"""The server's own view of a load-test period, from its Prometheus histograms scraped before and
after: per model, p50 / p99 in the server, mean queue wait and its share of the time, average
batch size, and the calls that failed by status. Next to the client's latencies it tells
whether the time went to the network and the client, the queue, or the model."""

from __future__ import annotations

import urllib.request
from collections import defaultdict
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

Snapshot = dict[tuple[str, tuple[tuple[str, str], ...]], float]

REQUEST = "deepserve_request_duration_seconds"
QUEUE = "deepserve_queue_duration_seconds"
BATCH = "deepserve_request_batch_size"
CALLS = "deepserve_requests_total"


def scrape(metrics_url: str) -> Snapshot:
    """Every sample of the server's /metrics, by name and labels."""
    address = metrics_url if "://" in metrics_url else f"http://{metrics_url}"
    with urllib.request.urlopen(f"{address.rstrip('/')}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus's histogram_quantile over (upper bound, cumulative count) pairs."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = bound, count
    return lower


@dataclass(frozen=True)
class ModelView:
    model: str
    requests: int
    p50_ms: float | None
    p99_ms: float | None
    mean_ms: float
    queue_ms: float
    batch_size: float

    @property
    def queue_share(self) -> float:
        return self.queue_ms / self.mean_ms if self.mean_ms else 0.0


def _delta(before: Snapshot, after: Snapshot) -> Snapshot:
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


def models(before: Snapshot, after: Snapshot) -> list[ModelView]:
    change = _delta(before, after)
    per_model: dict[str, dict[str, object]] = defaultdict(dict)
    for (name, labels), value in change.items():
        label = dict(labels)
        model = f"{label.get('model', '')} v{label.get('version', '')}"
        if name == f"{REQUEST}_bucket":
            per_model[model].setdefault("buckets", []).append((float(label["le"]), value))
        elif name.startswith((REQUEST, QUEUE, BATCH)) and name.endswith(("_sum", "_count")):
            per_model[model][name] = value
    views = []
    for model, values in sorted(per_model.items()):
        count = float(values.get(f"{REQUEST}_count", 0.0))
        if count <= 0:
            continue
        buckets = values.get("buckets", [])
        p50, p99 = quantile(0.5, buckets), quantile(0.99, buckets)
        views.append(
            ModelView(
                model=model,
                requests=int(count),
                p50_ms=p50 * 1000 if p50 is not None else None,
                p99_ms=p99 * 1000 if p99 is not None else None,
                mean_ms=float(values.get(f"{REQUEST}_sum", 0.0)) / count * 1000,
                queue_ms=float(values.get(f"{QUEUE}_sum", 0.0)) / count * 1000,
                batch_size=float(values.get(f"{BATCH}_sum", 0.0))
                / max(float(values.get(f"{BATCH}_count", 0.0)), 1.0),
            )
        )
    return views


def failures(before: Snapshot, after: Snapshot) -> dict[str, int]:
    """Calls that did not succeed in the period, by `rpc code`."""
    counts: dict[str, int] = defaultdict(int)
    for (name, labels), value in _delta(before, after).items():
        label = dict(labels)
        if name == CALLS and label.get("code") != "OK" and value > 0:
            counts[f"{label.get('rpc')} {label.get('code')}"] += int(value)
    return dict(counts)


def markdown(before: Snapshot, after: Snapshot) -> list[str]:
    views = models(before, after)
    if not views:
        return []
    fmt = lambda v: f"{v:.2f}" if v is not None else "-"  # noqa: E731
    lines = [
        "## The server's view of the same period",
        "",
        "From the server's histograms (scraped before and after the run): time in the server "
        "only. A client p99 well above the server's is time in the network and the client; a "
        "large queue share means too few instances or replicas.",
        "",
        "| model | requests | p50 ms | p99 ms | mean ms | queue wait ms | queue share "
        "| avg batch |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for v in views:
        lines.append(
            f"| {v.model} | {v.requests} | {fmt(v.p50_ms)} | {fmt(v.p99_ms)} | {v.mean_ms:.2f} | "
            f"{v.queue_ms:.2f} | {v.queue_share:.0%} | {v.batch_size:.2f} |"
        )
    failed = failures(before, after)
    if failed:
        lines += ["", "Calls that failed, by status (server side):", ""]
        lines += [f"- {name}: {count}" for name, count in sorted(failed.items())]
    return lines
