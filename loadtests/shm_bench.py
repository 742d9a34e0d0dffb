"""System shared memory against tensors in the request, side by side in one run, on one server:
a no-op model of resnet50's sizes (224x224x3 FP32 in, 1,000 scores out: the transport alone)
and the bundled segmentation model on 224x224 photos (its mask out). In shared memory mode the
input is written once into a region and every request names it, and every answer is written
into an output region (the client's own copy out of it, a memcpy, is not timed).

    python -m loadtests.shm_bench --concurrency 1,16 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as triton
import tritonclient.utils.shared_memory as shm
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as pb

from .closed_loop import run_load
from .figures import int_list, write_json
from .local_server import local_server
from .models import noop_model, read_config, write_model

RESNET50_SIZES = """
max_batch_size: 16
input [ { name: "image" data_type: TYPE_FP32 dims: [ 3, 224, 224 ] } ]
output [ { name: "scores" data_type: TYPE_FP32 dims: [ 1000 ] } ]
dynamic_batching { }
"""


def _cases(models: Path, scratch: Path) -> list[dict[str, Any]]:
    """Per model: its input (name, datatype, one request's array) and output (name, bytes)."""
    config = text_format.Parse(RESNET50_SIZES, mc.ModelConfig())
    write_model(scratch, "resnet50_sizes", noop_model(config), config)
    write_model(
        scratch,
        "segmentation",
        models / "segmentation" / "1" / "model.onnx",
        read_config(models / "segmentation"),
    )
    labels = (models / "segmentation" / "labels.txt").read_bytes()
    (scratch / "segmentation" / "labels.txt").write_bytes(labels)
    rng = np.random.default_rng(0)
    return [
        {
            "model": "resnet50_sizes",
            "input": ("image", "FP32", rng.standard_normal((1, 3, 224, 224), dtype=np.float32)),
            "output": ("scores", 1000 * 4),
        },
        {
            "model": "segmentation",
            "input": ("image", "UINT8", rng.integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)),
            "output": ("mask", 224 * 224),
        },
    ]


def _in_request(case: dict[str, Any]) -> bytes:
    name, datatype, array = case["input"]
    request = pb.ModelInferRequest(model_name=case["model"])
    request.inputs.add(name=name, datatype=datatype, shape=array.shape)
    request.raw_input_contents.append(array.tobytes())
    request.outputs.add(name=case["output"][0])
    return request.SerializeToString()


def _in_shared_memory(case: dict[str, Any], input_region: str, output_region: str) -> bytes:
    name, datatype, array = case["input"]
    request = pb.ModelInferRequest(model_name=case["model"])
    tensor = request.inputs.add(name=name, datatype=datatype, shape=array.shape)
    tensor.parameters["shared_memory_region"].string_param = input_region
    tensor.parameters["shared_memory_byte_size"].int64_param = array.nbytes
    output = request.outputs.add(name=case["output"][0])
    output.parameters["shared_memory_region"].string_param = output_region
    output.parameters["shared_memory_byte_size"].int64_param = case["output"][1]
    return request.SerializeToString()


def run(args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        cases = _cases(args.model_repository, scratch / "models")
        flags = ("--log-level", "WARNING", "--shared-memory", "on")
        with local_server(scratch / "models", scratch / "server.log", *flags) as url:
            client = triton.InferenceServerClient(url)
            handles = []
            for case in cases:
                tag = f"{case['model']}-{os.getpid()}"
                array = case["input"][2]
                inputs = shm.create_shared_memory_region(f"in-{tag}", f"/in-{tag}", array.nbytes)
                outputs = shm.create_shared_memory_region(
                    f"out-{tag}", f"/out-{tag}", case["output"][1]
                )
                handles += [inputs, outputs]
                shm.set_shared_memory_region(inputs, [array])
                client.register_system_shared_memory(f"in-{tag}", f"/in-{tag}", array.nbytes)
                client.register_system_shared_memory(f"out-{tag}", f"/out-{tag}", case["output"][1])
                modes = {
                    "in the request": _in_request(case),
                    "shared memory": _in_shared_memory(case, f"in-{tag}", f"out-{tag}"),
                }
                for concurrency in args.concurrency:
                    for mode, payload in modes.items():
                        result = asyncio.run(
                            run_load(url, [payload], concurrency, args.duration, args.warmup)
                        )
                        row = {
                            "model": case["model"],
                            "tensors": mode,
                            "concurrency": concurrency,
                            "requests_per_s": result.throughput,
                            "p50_ms": result.percentile(50),
                            "p99_ms": result.percentile(99),
                            "errors": result.errors,
                            "first_error": result.first_error,
                        }
                        rows.append(row)
                        print(
                            f"{case['model']:<15} {mode:<15} c={concurrency:<3} "
                            f"{row['requests_per_s']:7.0f} req/s  p50 {row['p50_ms']:.2f} ms  "
                            f"p99 {row['p99_ms']:.2f} ms  errors {row['errors']}",
                            flush=True,
                        )
            client.unregister_system_shared_memory()
            client.close()
            for handle in handles:
                shm.destroy_shared_memory_region(handle)
    return {"duration_s": args.duration, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-repository", type=Path, default=Path("models"))
    parser.add_argument("--concurrency", type=int_list, default=[1, 16])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    report = run(args)
    if args.out:
        write_json(report, args.out / "shared-memory-cpu.json")
    return 1 if any(row["errors"] for row in report["rows"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
