"""Where a request's time goes inside the server, for variants of one model side by side.

One server serves the model several times, each copy with other config parameters (the batch
path's `io_binding`, `pinned_buffers`, `pad_batches`, cuDNN's algorithm search); C clients
keep one request each in flight against each copy in turn, and the server's own statistics
split the time: queue, input, inference, output per request, and the inference time per batch
size. A slow stage shows as itself, not as a slow benchmark.

    python -m loadtests.stage_times --model resnet50_fp16 --model-repository DIR --device cuda
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from .figures import int_list
from .local_server import run_server

VARIANTS: dict[str, dict[str, str]] = {
    "default": {},
    "pageable": {"pinned_buffers": "0"},
    "unpadded": {"pad_batches": "0"},
    "plain": {"io_binding": "0"},
    "graphs": {"cuda_graphs": "1"},
    "heuristic": {"cuda_cudnn_conv_algo_search": "HEURISTIC", "pad_batches": "0"},
}


def repository(source: Path, scratch: Path, variants: list[str]) -> tuple[Path, mc.ModelConfig]:
    models = scratch / "models"
    config = text_format.Parse((source / "config.pbtxt").read_text(), mc.ModelConfig())
    for variant in variants:
        copy = mc.ModelConfig()
        copy.CopyFrom(config)
        copy.name = f"{source.name}_{variant}"
        for key, value in VARIANTS[variant].items():
            copy.parameters[key].string_value = value
        target = models / copy.name
        shutil.copytree(source, target)
        (target / "config.pbtxt").write_text(text_format.MessageToString(copy))
    return models, config


def request(model: str, config: mc.ModelConfig) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name=model)
    for tensor in config.input:
        dtype = np.uint8 if tensor.data_type == mc.TYPE_UINT8 else np.float32
        shape = [1, *tensor.dims]
        message.inputs.add(
            name=tensor.name,
            datatype="UINT8" if dtype is np.uint8 else "FP32",
            shape=shape,
        )
        message.raw_input_contents.append(np.zeros(shape, dtype).tobytes())
    return message


async def drive(url: str, message: pb.ModelInferRequest, clients: int, seconds: float) -> int:
    done = 0
    async with grpc.aio.insecure_channel(url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)

        async def client(stop_at: float) -> None:
            nonlocal done
            while time.perf_counter() < stop_at:
                try:
                    await stub.ModelInfer(message)
                    done += 1
                except grpc.aio.AioRpcError:  # refused as too slow: counted as not done
                    await asyncio.sleep(0.01)

        await asyncio.gather(*(client(time.perf_counter() + 1.0) for _ in range(clients)))
        done = 0
        await asyncio.gather(*(client(time.perf_counter() + seconds) for _ in range(clients)))
    return done


async def statistics(url: str, model: str) -> Any:
    async with grpc.aio.insecure_channel(url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        reply = await stub.ModelStatistics(pb.ModelStatisticsRequest(name=model))
    return reply.model_stats[0]


def breakdown(before: Any, after: Any) -> dict[str, Any]:
    def per_request(stage: str) -> float:
        ns = getattr(after.inference_stats, stage).ns - getattr(before.inference_stats, stage).ns
        count = after.inference_stats.success.count - before.inference_stats.success.count
        return ns / max(count, 1) / 1e6

    earlier = {b.batch_size: b for b in before.batch_stats}
    batches = {}
    for batch in after.batch_stats:
        old = earlier.get(batch.batch_size)
        count = batch.compute_infer.count - (old.compute_infer.count if old else 0)
        ns = batch.compute_infer.ns - (old.compute_infer.ns if old else 0)
        if count:
            batches[batch.batch_size] = {"batches": count, "infer_ms": ns / count / 1e6}
    return {
        stage: per_request(stage)
        for stage in ("queue", "compute_input", "compute_infer", "compute_output")
    } | {"per_batch_size": batches}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--model-repository", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--concurrency", type=int_list, default=[16])
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        models, config = repository(args.model_repository / args.model, Path(scratch), variants)
        log_path = (args.out or Path(scratch)) / "stage-times-server.log"
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
        with run_server(
            models, Path(scratch), "--device", args.device, timeout=300, log_path=log_path
        ) as server:
            for concurrency in args.concurrency:
                for variant in variants:
                    model = f"{args.model}_{variant}"
                    message = request(model, config)
                    before = asyncio.run(statistics(server.url, model))
                    done = asyncio.run(drive(server.url, message, concurrency, args.duration))
                    after = asyncio.run(statistics(server.url, model))
                    row = {
                        "variant": variant,
                        "concurrency": concurrency,
                        "requests_per_s": done / args.duration,
                    } | breakdown(before, after)
                    rows.append(row)
                    sizes = " ".join(
                        f"{size}:{b['infer_ms']:.1f}ms x{b['batches']}"
                        for size, b in sorted(row["per_batch_size"].items())
                    )
                    print(
                        f"{variant:>10} c={concurrency:<3} {row['requests_per_s']:7.0f} req/s  "
                        f"per request: queue {row['queue']:7.2f} input "
                        f"{row['compute_input']:6.2f} infer {row['compute_infer']:7.2f} output "
                        f"{row['compute_output']:6.2f} ms | infer per batch {sizes}",
                        flush=True,
                    )
    if args.out:
        (args.out / f"stage-times-{args.model}-{args.device}.json").write_text(
            json.dumps({"model": args.model, "device": args.device, "rows": rows}, indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
