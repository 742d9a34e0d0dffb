"""A Locust run, readable at a glance: throughput and p50 / p95 / p99 over time and against
users, as PNG plots, plus a markdown summary that adds the average batch size the server reached
(from its ModelStatistics) and, given the metrics port, the server's own view of the period.

    python -m loadtests.locust_report results/load --url localhost:8001
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def _float(value: str) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _history(prefix: Path) -> list[dict[str, str]]:
    with Path(f"{prefix}_stats_history.csv").open(newline="") as handle:
        return [r for r in csv.DictReader(handle) if r["Name"] == "Aggregated"]


def plot(prefix: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in _history(prefix) if _float(r["95%"]) is not None]
    if not rows:
        return []
    start = int(rows[0]["Timestamp"])
    seconds = [int(r["Timestamp"]) - start for r in rows]
    users = [int(r["User Count"]) for r in rows]
    # Throughput from the cumulative counts, second by second.
    counts = [int(r["Total Request Count"]) for r in rows]
    fails = [int(r["Total Failure Count"]) for r in rows]
    rps = [0.0] + [
        (counts[i] - counts[i - 1]) / max(seconds[i] - seconds[i - 1], 1)
        for i in range(1, len(rows))
    ]
    fps = [0.0] + [
        (fails[i] - fails[i - 1]) / max(seconds[i] - seconds[i - 1], 1) for i in range(1, len(rows))
    ]
    latency = {q: [_float(r[q]) for r in rows] for q in ("50%", "95%", "99%")}
    written = []
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    top.plot(seconds, rps, label="requests/s")
    top.plot(seconds, fps, label="failures/s", color="red")
    twin = top.twinx()
    twin.plot(seconds, users, color="grey", linestyle=":", label="users")
    twin.set_ylabel("users")
    top.set_ylabel("per second")
    top.legend(loc="upper left", fontsize=8)
    for q, values in latency.items():
        bottom.plot(seconds, values, label=f"p{q.rstrip('%')}")
    bottom.set_ylabel("latency ms")
    bottom.set_xlabel("seconds")
    bottom.legend(fontsize=8)
    for axis in (top, bottom):
        axis.grid(alpha=0.3)
    fig.suptitle("deepserve load test over time")
    fig.tight_layout()
    path = Path(f"{prefix}_over_time.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)

    by_users: dict[int, list[dict[str, str]]] = {}
    for r in rows:
        by_users.setdefault(int(r["User Count"]), []).append(r)
    levels = sorted(by_users)
    fig, axis = plt.subplots(figsize=(7, 4))
    for q in ("50%", "95%", "99%"):
        axis.plot(
            levels,
            [max(float(r[q]) for r in by_users[u]) for u in levels],
            marker="o",
            label=f"p{q.rstrip('%')} (worst second)",
        )
    axis.set_xlabel("users")
    axis.set_ylabel("latency ms")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    path = Path(f"{prefix}_vs_users.png")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)
    return written


def batch_sizes(url: str) -> dict[str, float]:
    """Average batch size per model from the server's statistics (inference / execution)."""
    import os

    import tritonclient.grpc as triton

    # Statistics need the admin scope where the server checks tokens.
    token = os.environ.get("DEEPSERVE_ADMIN_TOKEN") or os.environ.get("DEEPSERVE_TOKEN")
    headers = {"authorization": f"Bearer {token}"} if token else None
    client = triton.InferenceServerClient(url)
    stats = client.get_inference_statistics(headers=headers).model_stats
    return {
        f"{s.name} v{s.version}": s.inference_count / s.execution_count
        for s in stats
        if s.execution_count
    }


def summary(
    prefix: Path, plots: list[Path], batches: dict[str, float], server_view: list[str] = ()
) -> str:
    with Path(f"{prefix}_stats.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    lines = [
        "# Load test summary",
        "",
        "| request | requests | failures | req/s | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['Name']} | {r['Request Count']} | {r['Failure Count']} | "
            f"{float(r['Requests/s']):.1f} | {r['50%']} | {r['95%']} | {r['99%']} | "
            f"{float(r['Max Response Time']):.0f} |"
        )
    if batches:
        lines += ["", "Average batch size reached (server statistics, whole server lifetime):", ""]
        lines += [f"- {name}: {value:.2f}" for name, value in sorted(batches.items())]
    if server_view:
        lines += ["", *server_view]
    failures = Path(f"{prefix}_failures.csv")
    if failures.is_file():
        with failures.open(newline="") as handle:
            failed = list(csv.DictReader(handle))
        if failed:
            lines += ["", "Failures:", ""]
            lines += [f"- {f['Name']}: {f['Error']} ({f['Occurrences']}x)" for f in failed[:20]]
    if plots:
        lines += [""] + [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines) + "\n"


def write_report(prefix: Path, url: str | None, server_view: list[str] = ()) -> Path:
    plots = plot(prefix)
    batches = batch_sizes(url) if url else {}
    path = Path(f"{prefix}_summary.md")
    path.write_text(summary(prefix, plots, batches, server_view))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefix", type=Path, help="the --csv prefix of the Locust run")
    parser.add_argument("--url", default=None, help="server to read ModelStatistics from")
    args = parser.parse_args(argv)
    print(f"wrote {write_report(args.prefix, args.url)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
