"""What one call costs the server at concurrency 1: deepserve (the model and a no-op model of
its sizes), the simple server and the bare gRPC floor, one after another on the same requests.
Each server's own CPU time per call (from /proc, the client's is not counted) beside the
latency the client saw; then deepserve's handler in process, by stage (handler_cost).

    python -m loadtests.call_cost --model mnist --duration 5 --out docs/benchmarks
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path
from typing import Any

from . import handler_cost
from .bench import make_images, payloads_for
from .closed_loop import LoadResult, run_load
from .figures import write_json
from .grpc_floor import floor_server
from .local_server import RunningServer, run_server
from .models import bench_repository, read_config
from .simple_server import simple_server

_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User plus system CPU seconds of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def measure(server: RunningServer, payloads: list[bytes], duration: float) -> dict[str, Any]:
    """A warm-up second, then `duration` seconds at concurrency 1 with the server's CPU read
    before and after."""
    asyncio.run(run_load(server.url, payloads, 1, 1.0, 0.0))
    before = process_cpu_s(server.process.pid)
    result: LoadResult = asyncio.run(run_load(server.url, payloads, 1, duration, 0.0))
    used = process_cpu_s(server.process.pid) - before
    calls = result.requests + result.errors
    return {
        "calls": calls,
        "errors": result.errors,
        "p50_ms": result.percentile(50),
        "p99_ms": result.percentile(99),
        "server_cpu_us_per_call": 1e6 * used / calls if calls else float("nan"),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = read_config(args.model_repository / args.model)
    input_name, images, datatype = make_images(config, 256)
    onnx_file = args.model_repository / args.model / "1" / "model.onnx"

    def payloads(model: str) -> list[bytes]:
        return payloads_for(model, input_name, datatype, images, 1)

    rows: dict[str, dict[str, Any]] = {}

    def measured(label: str, server: RunningServer, model: str) -> None:
        rows[label] = measure(server, payloads(model), args.duration)
        print_row(label, rows[label])

    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        names = bench_repository(args.model_repository, args.model, scratch / "models", 64, 1, 0)
        flags = ("--log-level", "WARNING", *args.server_flag)
        with run_server(scratch / "models", scratch, *flags) as server:
            measured("deepserve, no-op model", server, names["noop"])
            measured("deepserve", server, names["batching"])
        with simple_server(scratch / "models" / names["noop"] / "1" / "model.onnx") as server:
            measured("simple server, no-op model", server, args.model)
    with simple_server(onnx_file) as server:
        measured("simple server", server, args.model)
    with floor_server() as server:
        measured("gRPC floor", server, "floor")
    print("in process, one call's CPU by stage (loadtests.handler_cost):", flush=True)
    stages = handler_cost.run(args.model, args.model_repository, args.handler_calls, "noop")
    handler_cost.print_report(stages)
    return {"model": args.model, "duration_s": args.duration, "rows": rows, "handler": stages}


def print_row(label: str, row: dict[str, Any]) -> None:
    print(
        f"  {label:27s} p50 {row['p50_ms']:.3f} ms  p99 {row['p99_ms']:.3f} ms  "
        f"server CPU {row['server_cpu_us_per_call']:.0f} us/call  ({row['calls']} calls)",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mnist")
    parser.add_argument("--model-repository", type=Path, default=Path("models"))
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per server")
    parser.add_argument("--handler-calls", type=int, default=5000, help="in process, per step")
    parser.add_argument(
        "--server-flag", action="append", default=[], help="a flag for deepserve (repeatable)"
    )
    parser.add_argument("--out", type=Path, default=None, help="write call-cost-MODEL.json here")
    args = parser.parse_args(argv)
    report = run(args)
    if args.out is not None:
        write_json(report, args.out / f"call-cost-{args.model}-cpu.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
