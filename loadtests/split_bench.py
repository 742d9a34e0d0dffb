"""Single process vs split server (--frontends N), side by side: throughput and server CPU.

For each --frontends value (0: one process), a server is started on the model's batching and
no-op variants; a closed-loop gRPC load runs at each concurrency from --load-processes client
processes; the server's CPU time (all its processes, read from /proc) and its answered count
(ModelStatistics) are read before and after each point, giving CPU-seconds per 1,000 requests.
Prints a table; writes JSON and a PNG.

    python -m loadtests.split_bench --model mnist --frontends 0,1,2 --concurrency 64
    python -m loadtests.split_bench --model resnet50 --modes noop --frontends 1,2,4,8 \\
        --load-processes 8 --device cuda          # the GPU host's front-end scaling
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import tritonclient.grpc as triton

from deepserve.server.split.supervisor import ENGINE_NAME, FRONTEND_NAME

from .bench import make_images, payloads_for
from .figures import Panel, int_list, write_report
from .local_server import RunningServer, run_server
from .models import bench_repository, read_config
from .spread_load import SpreadLoad

TICKS = os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    """The process and its descendants (a split server's supervisor, engine, front ends)."""
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                stack.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                continue
    return found


def _stat_fields(pid: int) -> tuple[str, list[str]] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name, rest = text.split("(", 1)[1].rsplit(")", 1)
    return name, rest.split()


def cpu_by_role(pid: int) -> dict[str, float]:
    """User + system CPU-seconds of the process tree, by role: the split server's engine and
    front ends (named so by the supervisor), and the rest (the supervisor, or one process)."""
    seconds = {"engine": 0.0, "frontends": 0.0, "rest": 0.0}
    for member in _tree(pid):
        stat = _stat_fields(member)
        if stat is None:
            continue
        name, fields = stat
        if name == ENGINE_NAME:
            role = "engine"
        elif name.startswith(FRONTEND_NAME.format("")):
            role = "frontends"
        else:
            role = "rest"
        seconds[role] += (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
    return seconds


def cpu_seconds(pid: int) -> float:
    """User + system CPU-seconds of the process tree, from /proc/<pid>/stat."""
    return sum(cpu_by_role(pid).values())


def _answered(client: triton.InferenceServerClient, model: str) -> int:
    return client.get_inference_statistics(model).model_stats[0].inference_stats.success.count


def measure(
    server: RunningServer,
    load: SpreadLoad,
    model: str,
    payloads: list[bytes],
    concurrency: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    client = triton.InferenceServerClient(server.url)
    answered, before = _answered(client, model), cpu_by_role(server.process.pid)
    started = time.perf_counter()
    result = load.run(server.url, payloads, concurrency, args.duration, args.warmup, args.channels)
    elapsed = time.perf_counter() - started
    roles = {k: v - before[k] for k, v in cpu_by_role(server.process.pid).items()}
    cpu = sum(roles.values())
    answered = _answered(client, model) - answered
    client.close()
    per_1000 = {
        f"{role}_cpu_s_per_1000": 1000 * seconds / answered if answered else float("nan")
        for role, seconds in roles.items()
    }
    # Cores each role kept busy (warm-up included): front ends near their count mean the
    # server set the pace; well below it, the load did.
    busy = {f"{role}_cores_busy": seconds / elapsed for role, seconds in roles.items()}
    return (
        per_1000
        | busy
        | {
            "concurrency": concurrency,
            "infer_per_s": result.throughput,
            "p50_ms": result.percentile(50),
            "p99_ms": result.percentile(99),
            "errors": result.errors,
            "first_error": result.first_error,
            "server_cpu_s": cpu,
            "answered": answered,
            "cpu_s_per_1000": 1000 * cpu / answered if answered else float("nan"),
        }
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = read_config(args.model_repository / args.model)
    input_name, images, datatype = make_images(config, 256)
    rows: list[dict[str, Any]] = []
    load = SpreadLoad(args.load_processes)
    try:
        with tempfile.TemporaryDirectory() as scratch_dir:
            scratch = Path(scratch_dir)
            names = bench_repository(
                args.model_repository, args.model, scratch / "models", args.max_batch_size, 1, 0
            )
            for frontends in args.frontends:
                flags = ["--device", args.device, "--log-level", "WARNING"]
                flags += ["--intra-op-threads", str(args.intra_op_threads)]
                flags += ["--frontends", str(frontends)]
                with run_server(scratch / "models", scratch, *flags, timeout=300) as server:
                    for mode in args.modes:
                        model = names[mode]
                        payloads = payloads_for(model, input_name, datatype, images)
                        for concurrency in args.concurrency:
                            row = measure(server, load, model, payloads, concurrency, args)
                            row |= {"frontends": frontends, "mode": mode}
                            rows.append(row)
                            print(_line(row), flush=True)
    finally:
        load.close()
    return {
        "model": args.model,
        "device": args.device,
        "host": f"{platform.node()} ({os.cpu_count()} cores)",
        "load_processes": args.load_processes,
        "duration_s": args.duration,
        "rows": rows,
    }


def _line(row: dict[str, Any]) -> str:
    return (
        f"  {row['mode']:<9} frontends={row['frontends']:<2} c={row['concurrency']:<4}"
        f"{row['infer_per_s']:9.0f} infer/s  p50 {row['p50_ms']:6.2f} ms  "
        f"p99 {row['p99_ms']:6.2f} ms  CPU {row['cpu_s_per_1000']:.3f} s/1000 req"
        f"{_roles(row)}  errors {row['errors']}"
    )


def _roles(row: dict[str, Any]) -> str:
    """Where a split server's CPU went: the engine and the front ends (per 1,000 requests)."""
    if not row["frontends"]:
        return ""
    return (
        f" (engine {row['engine_cpu_s_per_1000']:.3f}, front ends "
        f"{row['frontends_cpu_s_per_1000']:.3f}; cores busy: engine "
        f"{row['engine_cores_busy']:.2f}, front ends {row['frontends_cores_busy']:.2f})"
    )


def write_outputs(report: dict[str, Any], out: Path) -> list[Path]:
    return write_report(
        report,
        out / f"split-{report['model']}-{report['device']}",
        x="frontends",
        xlabel="front ends (0: one process)",
        group=lambda row: (row["mode"], row["concurrency"]),
        label=lambda key: f"{key[0]}, c={key[1]}",
        panels=[
            Panel("infer_per_s", "Throughput", "requests/s"),
            Panel("cpu_s_per_1000", "Server CPU per request", "CPU-s per 1,000 requests"),
        ],
        title=f"{report['model']} on {report['device']}, {report['host']}",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--model", required=True, help="model name in --model-repository")
    parser.add_argument("--model-repository", type=Path, default=Path("models"))
    parser.add_argument("--frontends", type=int_list, default=[0, 1], help="0: one process")
    parser.add_argument("--modes", type=lambda s: s.split(","), default=["batching", "noop"])
    parser.add_argument("--concurrency", type=int_list, default=[64])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per point")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--load-processes", type=int, default=1, help="client processes")
    parser.add_argument("--channels", type=int, default=4, help="connections per client process")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--intra-op-threads", type=int, default=0, help="ONNX Runtime threads (0: its default)"
    )
    parser.add_argument("--out", type=Path, default=Path("results"), help="folder for JSON + PNG")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    report = run(args)
    for path in write_outputs(report, args.out):
        print(f"wrote {path}")
    return 1 if any(row["errors"] for row in report["rows"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
