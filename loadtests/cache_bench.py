"""The response cache on a repeated-input workload, side by side in one run: one server, the
model twice (as it is, and with `response_cache { enable: true }`), a closed-loop load that
cycles through a few distinct inputs, so every request after the first round is one seen before.

    python -m loadtests.cache_bench --model cifar10_resnet20 --distinct 32 --concurrency 1,16
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path
from typing import Any

import tritonclient.grpc as triton

from .bench import make_images, payloads_for
from .closed_loop import run_load
from .figures import int_list, write_json
from .local_server import local_server
from .models import read_config, write_model


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = read_config(args.model_repository / args.model)
    onnx_file = args.model_repository / args.model / "1" / "model.onnx"
    input_name, images, datatype = make_images(config, args.distinct)
    rows = []
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        names = {"off": args.model, "on": f"{args.model}_cached"}
        write_model(scratch / "models", names["off"], onnx_file, config)
        config.response_cache.enable = True
        write_model(scratch / "models", names["on"], onnx_file, config)
        flags = ("--response-cache-mb", str(args.cache_mb), "--log-level", "WARNING")
        with local_server(scratch / "models", scratch / "server.log", *flags) as url:
            client = triton.InferenceServerClient(url)
            for cache, model in names.items():
                payloads = payloads_for(model, input_name, datatype, images)
                for concurrency in args.concurrency:
                    result = asyncio.run(
                        run_load(url, payloads, concurrency, args.duration, args.warmup)
                    )
                    stats = client.get_inference_statistics(model).model_stats[0]
                    row = {
                        "cache": cache,
                        "concurrency": concurrency,
                        "requests_per_s": result.throughput,
                        "p50_ms": result.percentile(50),
                        "p99_ms": result.percentile(99),
                        "errors": result.errors,
                        "cache_hits": stats.inference_stats.cache_hit.count,
                        "executions": stats.execution_count,
                    }
                    rows.append(row)
                    print(
                        f"cache {cache:<3} c={concurrency:<3} {row['requests_per_s']:7.0f} req/s  "
                        f"p50 {row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms  "
                        f"(so far: {row['cache_hits']} hits, {row['executions']} runs)",
                        flush=True,
                    )
            client.close()
    return {
        "model": args.model,
        "distinct_inputs": args.distinct,
        "cache_mb": args.cache_mb,
        "duration_s": args.duration,
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="cifar10_resnet20")
    parser.add_argument("--model-repository", type=Path, default=Path("models"))
    parser.add_argument("--distinct", type=int, default=32, help="distinct inputs, cycled")
    parser.add_argument("--concurrency", type=int_list, default=[1, 16])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--cache-mb", type=float, default=16.0)
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    report = run(args)
    if args.out:
        write_json(report, args.out / f"response-cache-{args.model}-cpu.json")
    return 1 if any(row["errors"] for row in report["rows"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
