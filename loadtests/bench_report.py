"""The benchmark's table, JSON and plot."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def format_table(report: dict[str, Any]) -> str:
    lines = [
        f"model {report['model']} on {report['device']}: compute ceiling C = "
        f"{report['ceiling']['items_per_s']:.0f} infer/s (in-process, batch "
        f"{report['ceiling']['best_batch']})",
        f"{'mode':<12} {'conc':>5} {'infer/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
        f"{'avg batch':>9} {'errors':>6}",
    ]
    for row in report["rows"]:
        lines.append(
            f"{row['mode']:<12} {row['concurrency']:>5} {row['infer_per_s']:>9.0f} "
            f"{row['p50_ms']:>8.2f} {row['p90_ms']:>8.2f} {row['p99_ms']:>8.2f} "
            f"{row['avg_batch']:>9.2f} {row['errors']:>6}"
        )
    for conc, summary in report.get("summary", {}).items():
        line = (
            f"concurrency {conc}: N = {summary['transport_ceiling']:.0f}, bound 1/(1/C+1/N) = "
            f"{summary['bound']:.0f}, batching = {summary['batching']:.0f} "
            f"({summary['vs_bound']:.2f} x bound"
        )
        if "vs_no_batching" in summary:
            line += (
                f", {summary['vs_no_batching']:.2f} x no batching), "
                f"p50 batching - no batching = {summary['p50_delta_ms']:+.3f} ms"
            )
        lines.append(line + ("" if "vs_no_batching" in summary else ")"))
        if "vs_simple" in summary:
            lines.append(
                f"  against the simple server: {summary['vs_simple']:.2f} x its throughput, "
                f"p50 {summary['p50_minus_simple_ms']:+.3f} ms"
            )
        if "p50_above_in_process_ms" in summary:
            lines.append(
                f"  p50 {summary['p50_ms']:.3f} ms = in-process run "
                f"{summary['in_process_ms']:.3f} + {summary['p50_above_in_process_ms']:.3f} ms "
                f"above it; of that, gRPC floor {summary['grpc_floor_p50_ms']:.3f} ms "
                f"(client, loopback, grpcio), deepserve {summary['deepserve_ms']:.3f} ms "
                f"(no-op p50 - floor), the rest {summary['run_in_server_ms']:.3f} ms (the run "
                "in the server beyond in-process: its threads wake, the batch forms)"
            )
    return "\n".join(lines)


def summarize(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per concurrency: N (no-op server), the shared-CPU bound and how batching compares; with
    the no-batching mode, how batching compares to it; at concurrency 1 with the gRPC floor,
    where the batching p50 goes (the in-process run, the floor, deepserve's own time)."""
    by_key = {(r["mode"], r["concurrency"]): r for r in report["rows"]}
    ceiling = report["ceiling"]["items_per_s"]
    summary: dict[str, dict[str, float]] = {}
    for conc in report["concurrency"]:
        batching = by_key.get(("batching", conc))
        plain = by_key.get(("no_batching", conc))
        noop = by_key.get(("noop", conc))
        simple = by_key.get(("simple", conc))
        if not (batching and noop):
            continue
        transport = noop["infer_per_s"]
        bound = 1 / (1 / ceiling + 1 / transport) if ceiling and transport else math.nan
        point = summary[str(conc)] = {
            "transport_ceiling": transport,
            "bound": bound,
            "batching": batching["infer_per_s"],
            "vs_bound": batching["infer_per_s"] / bound if bound else math.nan,
        }
        if plain:
            point["vs_no_batching"] = (
                batching["infer_per_s"] / plain["infer_per_s"] if plain["infer_per_s"] else math.nan
            )
            point["p50_delta_ms"] = batching["p50_ms"] - plain["p50_ms"]
        if simple and simple["infer_per_s"]:
            point["vs_simple"] = batching["infer_per_s"] / simple["infer_per_s"]
            point["p50_minus_simple_ms"] = batching["p50_ms"] - simple["p50_ms"]
        point |= _latency_parts(report, conc, batching, noop)
    return summary


def _latency_parts(
    report: dict[str, Any], conc: int, batching: dict[str, Any], noop: dict[str, Any]
) -> dict[str, float]:
    floor = report.get("grpc_floor")
    per_request = report.get("images_per_request", 1)
    items_per_s = report["ceiling"]["by_batch"].get(str(per_request))
    if conc != 1 or not floor or not items_per_s:
        return {}
    in_process_ms = 1000 * per_request / items_per_s  # one run of a request's batch
    return {
        "p50_ms": batching["p50_ms"],
        "in_process_ms": in_process_ms,
        "p50_above_in_process_ms": batching["p50_ms"] - in_process_ms,
        "grpc_floor_p50_ms": floor["p50_ms"],
        "deepserve_ms": noop["p50_ms"] - floor["p50_ms"],
        "run_in_server_ms": batching["p50_ms"] - in_process_ms - noop["p50_ms"],
    }


def write_outputs(report: dict[str, Any], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"bench-{report['model']}-{report['device']}"
    if report.get("images_per_request", 1) > 1:
        stem += f"-{report['images_per_request']}-per-request"
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    written = [json_path]
    try:
        written.append(_plot(report, out_dir / f"{stem}.png"))
    except ImportError:
        print("matplotlib is not installed: no plot (pip install 'deepserve[loadtest]')")
    return written


def _plot(report: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = {
        "batching": "tab:blue",
        "no_batching": "tab:orange",
        "noop": "tab:green",
        "simple": "tab:red",
    }
    for mode, color in colors.items():
        rows = [r for r in report["rows"] if r["mode"] == mode]
        if not rows:
            continue
        conc = [r["concurrency"] for r in rows]
        left.plot(conc, [r["infer_per_s"] for r in rows], marker="o", color=color, label=mode)
        right.plot(conc, [r["p99_ms"] for r in rows], marker="o", color=color, label=f"{mode} p99")
        right.plot(
            conc,
            [r["p50_ms"] for r in rows],
            marker=".",
            linestyle=":",
            color=color,
            label=f"{mode} p50",
        )
    left.axhline(
        report["ceiling"]["items_per_s"], color="grey", linestyle="--", label="compute ceiling C"
    )
    bounds = report.get("summary", {})
    if bounds:
        left.plot(
            [int(c) for c in bounds],
            [s["bound"] for s in bounds.values()],
            color="black",
            linestyle=":",
            label="1/(1/C+1/N)",
        )
    for axis in (left, right):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("concurrent requests")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    left.set_ylabel("infer/s")
    right.set_ylabel("latency ms")
    left.set_yscale("log")
    fig.suptitle(f"deepserve: {report['model']} on {report['device']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
