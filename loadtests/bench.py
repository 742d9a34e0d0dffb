"""Benchmark the server against its two ceilings, side by side in one run.

    python -m loadtests.bench --model mnist --concurrency 1,8,32,64

For the model, at each concurrency level, a closed-loop gRPC load from this process measures
  (a) `batching`:    the server with dynamic batching,
  (b) `no_batching`: the same server with batching off,
  (d) `noop`:        the same server serving a no-op model of the same input / output sizes
                     (the transport ceiling N),
  (e) `simple`:      the simplest server one writes in an afternoon (loadtests/simple_server.py:
                     grpc.aio, one ONNX Runtime session, `session.run` in the handler),
and (c) in-process ONNX Runtime at its best batch size gives the compute ceiling C. Client and
server share the machine, so about 1 / (1/C + 1/N) is reachable. Prints a table, writes JSON and
a PNG plot to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as triton
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as pb

from .bench_report import format_table, summarize, write_outputs
from .ceiling import compute_ceiling, served_providers
from .closed_loop import LoadResult, run_load
from .figures import int_list
from .gpu_sampler import GpuSampler
from .grpc_floor import floor_server
from .local_server import local_server
from .models import bench_repository, read_config
from .simple_server import simple_server
from .spread_load import SpreadLoad

MODES = ("batching", "no_batching", "noop", "simple")
_DATATYPES = {"TYPE_UINT8": ("UINT8", np.uint8), "TYPE_FP32": ("FP32", np.float32)}


def make_images(config, count: int, seed: int = 0) -> tuple[str, np.ndarray, str]:
    """`count` distinct inputs of the model's shape (uint8 images, or floats)."""
    (tensor,) = config.input
    datatype, dtype = _DATATYPES[mc.DataType.Name(tensor.data_type)]
    rng = np.random.default_rng(seed)
    shape = (count, *tensor.dims)
    if dtype == np.uint8:
        images = rng.integers(0, 256, shape, dtype=np.uint8)
    else:
        images = rng.standard_normal(shape, dtype=np.float32)
    return tensor.name, images, datatype


def payloads_for(
    model: str, name: str, datatype: str, images: np.ndarray, per_request: int = 1
) -> list[bytes]:
    """Serialized ModelInfer requests of `per_request` images each."""
    out = []
    for start in range(0, len(images) - per_request + 1, per_request):
        batch = images[start : start + per_request]
        request = pb.ModelInferRequest(model_name=model)
        request.inputs.add(name=name, datatype=datatype, shape=list(batch.shape))
        request.raw_input_contents.append(batch.tobytes())
        out.append(request.SerializeToString())
    return out


def _counts(client: triton.InferenceServerClient, model: str) -> tuple[int, int]:
    stats = client.get_inference_statistics(model).model_stats[0]
    return stats.inference_count, stats.execution_count


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    source = args.model_repository
    config = read_config(source / args.model)
    input_name, images, datatype = make_images(config, 256)
    batches = sorted({b for b in (1, 8, 16, 32, 64, 128, 256) if b <= max(args.max_batch_size, 1)})
    onnx_file = source / args.model / "1" / "model.onnx"
    # The ceiling runs what the server runs (TensorRT when the config asks for it, on a GPU).
    served = served_providers(
        source / args.model, args.device, args.max_batch_size, f"{args.model}_batching"
    )
    print(f"compute ceiling: in-process {served.names}, batch sizes {batches} ...", flush=True)
    ceiling = compute_ceiling(
        onnx_file,
        images,
        batches,
        args.device,
        seconds_per_batch=args.ceiling_seconds,
        providers=served.providers,
    )
    extra_ceilings = {}
    if "TensorrtExecutionProvider" in served.names:
        print("compute ceiling: in-process CUDA provider alone ...", flush=True)
        extra_ceilings["ceiling_cuda"] = compute_ceiling(
            onnx_file, images, batches, args.device, seconds_per_batch=args.ceiling_seconds
        )
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        names = bench_repository(
            source,
            args.model,
            scratch / "models",
            args.max_batch_size,
            args.instances,
            args.queue_delay_us,
        )
        server_flags = (
            "--device",
            args.device,
            "--intra-op-threads",
            str(args.intra_op_threads),
            "--log-level",
            "WARNING",
            "--frontends",
            str(args.frontends),
            *(["--intra-op-spinning"] if args.intra_op_spinning else []),
        )
        spread = SpreadLoad(args.load_processes) if args.load_processes > 1 else None

        def load(url: str, payloads: list[bytes], conc: int) -> LoadResult:
            if spread is not None:
                return spread.run(url, payloads, conc, args.duration, args.warmup, args.channels)
            return asyncio.run(run_load(url, payloads, conc, args.duration, args.warmup))

        started = time.perf_counter()
        served_modes = [mode for mode in args.modes if mode != "simple"]
        with local_server(scratch / "models", scratch / "server.log", *server_flags) as url:
            ready_s = time.perf_counter() - started
            client = triton.InferenceServerClient(url)
            for mode in served_modes:
                model = names[mode]
                per_request = args.images_per_request
                payloads = payloads_for(model, input_name, datatype, images, per_request)
                for conc in args.concurrency:
                    before = _counts(client, model)
                    with GpuSampler() as gpu:
                        result = load(url, payloads, conc)
                    after = _counts(client, model)
                    executions = after[1] - before[1]
                    avg_batch = (after[0] - before[0]) / executions if executions else 0.0
                    rows.append(_row(mode, conc, result, per_request, avg_batch, gpu))
        if "simple" in args.modes and args.device == "cpu":
            per_request = args.images_per_request
            payloads = payloads_for(args.model, input_name, datatype, images, per_request)
            with simple_server(onnx_file) as simple:
                for conc in args.concurrency:
                    with GpuSampler() as gpu:
                        result = load(simple.url, payloads, conc)
                    rows.append(_row("simple", conc, result, per_request, 1.0, gpu))
        floor = None
        if 1 in args.concurrency and "noop" in args.modes:
            # The same requests at concurrency 1 to a gRPC server with no deepserve code.
            payloads = payloads_for("floor", input_name, datatype, images, args.images_per_request)
            with floor_server() as floor_process:
                result = load(floor_process.url, payloads, 1)
            floor = {"p50_ms": result.percentile(50), "p99_ms": result.percentile(99)}
            print(f"  gRPC floor   c=1    p50 {floor['p50_ms']:.3f} ms", flush=True)
        if spread is not None:
            spread.close()

    report: dict[str, Any] = {
        "model": args.model,
        "device": args.device,
        "host": f"{os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}",
        "duration_s": args.duration,
        "concurrency": args.concurrency,
        "server": {
            "max_batch_size": args.max_batch_size,
            "instances": args.instances,
            "queue_delay_us": args.queue_delay_us,
            "intra_op_threads": args.intra_op_threads,
            "intra_op_spinning": args.intra_op_spinning,
            "frontends": args.frontends,
        },
        "load_processes": args.load_processes,
        "images_per_request": args.images_per_request,
        # With TensorRT, the ceiling's session builds the engine into the cache (a cold start)
        # and the server started next reads it from there (a warm start).
        "startup": {"ceiling_session_ready_s": ceiling.ready_s, "server_ready_s": ready_s},
        "ceiling": {"providers": served.names, **ceiling.to_json()},
        **{key: value.to_json() for key, value in extra_ceilings.items()},
        "rows": rows,
        "grpc_floor": floor,
    }
    report["summary"] = summarize(report)
    return report


def _row(
    mode: str, conc: int, result: LoadResult, per_request: int, avg_batch: float, gpu: GpuSampler
) -> dict[str, Any]:
    row = {
        "mode": mode,
        "concurrency": conc,
        # images per second: requests times the images each carries
        "infer_per_s": result.throughput * per_request,
        "requests_per_s": result.throughput,
        "p50_ms": result.percentile(50),
        "p90_ms": result.percentile(90),
        "p99_ms": result.percentile(99),
        "avg_batch": avg_batch,
        "requests": result.requests,
        "errors": result.errors,
        "first_error": result.first_error,
        **(gpu.summary() or {}),
    }
    print(
        f"  {mode:<12} c={conc:<4} {row['infer_per_s']:8.0f} infer/s  "
        f"p50 {row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms  "
        f"avg batch {row['avg_batch']:.2f}  errors {row['errors']}"
        + (f"  GPU {row['gpu_util_mean_pct']:.0f} %" if "gpu_util_mean_pct" in row else ""),
        flush=True,
    )
    return row


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="model name in --model-repository")
    parser.add_argument("--model-repository", type=Path, default=Path("models"))
    parser.add_argument(
        "--concurrency",
        type=int_list,
        default=[1, 8, 32, 64],
        help="comma-separated in-flight request counts",
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per point")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    parser.add_argument(
        "--modes",
        type=lambda s: s.split(","),
        default=list(MODES),
        help=f"which of {','.join(MODES)} to run",
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--instances", type=int, default=1, help="instance_group count")
    parser.add_argument(
        "--queue-delay-us",
        type=int,
        default=0,
        help="dynamic_batching max_queue_delay_microseconds",
    )
    parser.add_argument(
        "--intra-op-threads",
        type=int,
        default=0,
        help="ONNX Runtime threads of the server (0: its default); the compute ceiling always "
        "uses ONNX Runtime's default, all cores",
    )
    parser.add_argument(
        "--intra-op-spinning",
        action="store_true",
        help="the server's ONNX Runtime threads spin-wait between runs (its --intra-op-spinning)",
    )
    parser.add_argument(
        "--ceiling-seconds",
        type=float,
        default=1.5,
        help="seconds of in-process runs per batch size for the compute ceiling",
    )
    parser.add_argument(
        "--frontends", type=int, default=0, help="server front-end processes (0: one process)"
    )
    parser.add_argument(
        "--load-processes",
        type=int,
        default=1,
        help="client processes sending the load (more than one Python client can send is "
        "needed past about 5,000 requests/s)",
    )
    parser.add_argument("--channels", type=int, default=4, help="connections per client process")
    parser.add_argument(
        "--images-per-request", type=int, default=1, help="images in each request's batch"
    )
    parser.add_argument("--out", type=Path, default=Path("results"), help="folder for JSON + PNG")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    report = run_bench(args)
    print(format_table(report))
    for path in write_outputs(report, args.out):
        print(f"wrote {path}")
    failed = sum(row["errors"] for row in report["rows"])
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
