"""The read_number pipeline against its slowest stage alone and against the same chain made by
hand, side by side in one run on one server, closed loop at each concurrency:

- `pipeline`: one ModelInfer of read_number a picture (the four steps run in the server);
- `slowest stage`: one ModelInfer of ssd with the same picture (the detector: the stage that
  costs the most, measured below);
- `hand chain`: what a client does without ensembles: ssd, then the crops cut on the client
  (the same digit_crops graph, in the client's process), one mnist call per digit (sent at
  once), the digits put in order on the client; the pictures' pixels cross the wire once,
  the crops once more.

At concurrency 1 each stage is also called alone (its own ModelInfer with the tensors the
pipeline passes it), for the sum of the stages' p50s.

    python -m loadtests.pipeline_bench --out docs/benchmarks
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
from tritonclient.grpc import service_pb2 as pb

from deepserve.training.read_number import Chain

from .closed_loop import MODEL_INFER, LoadResult, Send, closed_loop, run_load
from .figures import Panel, int_list, write_report
from .local_server import run_server
from .payloads import number_scenes

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.use_local_subchannel_pool", 1)]


def _request(model: str, tensors: dict[str, np.ndarray]) -> pb.ModelInferRequest:
    datatypes = {np.uint8: "UINT8", np.float32: "FP32"}
    request = pb.ModelInferRequest(model_name=model)
    for name, array in tensors.items():
        request.inputs.add(name=name, datatype=datatypes[array.dtype.type], shape=array.shape)
        request.raw_input_contents.append(np.ascontiguousarray(array).tobytes())
    return request


def _outputs(response: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    datatypes = {"FP32": np.float32, "INT64": np.int64}
    found = {}
    for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=True):
        if tensor.datatype in datatypes:
            found[tensor.name] = np.frombuffer(raw, datatypes[tensor.datatype]).reshape(
                tensor.shape
            )
    return found


def stage_payloads(images: list[np.ndarray]) -> dict[str, list[bytes]]:
    """Each stage's own request for each picture: the tensors the pipeline passes it."""
    chain = Chain(MODELS)
    run = {name: session.run for name, session in chain.sessions.items()}
    stages: dict[str, list[bytes]] = {n: [] for n in chain.sessions}
    for image in images:
        batch = image[None]
        boxes, scores, _, _ = run["ssd"](None, {"image": batch})
        crops, digit_boxes, digit_scores = run["digit_crops"](
            None, {"image": batch, "boxes": boxes, "scores": scores}
        )
        (logits,) = run["mnist"](None, {"image": crops})
        feeds = {
            "ssd": {"image": batch},
            "digit_crops": {"image": batch, "boxes": boxes, "scores": scores},
            "mnist": {"image": crops},
            "number_order": {
                "logits": logits, "digit_boxes": digit_boxes, "digit_scores": digit_scores
            },
        }  # fmt: skip
        for name, tensors in feeds.items():
            stages[name].append(_request(name, tensors).SerializeToString())
    return stages


async def hand_chain(target: str, images: list[np.ndarray], concurrency: int, seconds: float):
    """ssd, crops on the client, a call per digit to mnist, ordering on the client."""
    crop = ort.InferenceSession(
        str(MODELS / "digit_crops" / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    channel = grpc.aio.insecure_channel(target, options=OPTIONS)
    infer = channel.unary_unary(
        MODEL_INFER,
        request_serializer=pb.ModelInferRequest.SerializeToString,
        response_deserializer=pb.ModelInferResponse.FromString,
    )
    detector_requests = [_request("ssd", {"image": i[None]}) for i in images]

    @contextlib.asynccontextmanager
    async def sender(index: int) -> AsyncIterator[Send]:
        async def send(n: int) -> str | None:
            image = images[n % len(images)]
            try:
                found = _outputs(await infer(detector_requests[n % len(images)], timeout=30))
                crops, digit_boxes, digit_scores = crop.run(
                    None, {"image": image[None], "boxes": found["boxes"], "scores": found["scores"]}
                )
                digits = int((digit_scores[0] > 0).sum())
                answers = await asyncio.gather(
                    *(infer(_request("mnist", {"image": crops[k : k + 1]}), timeout=30)
                      for k in range(digits))
                )  # fmt: skip
                labels = [int(_outputs(a)["logits"].argmax()) for a in answers]
                order = np.argsort(digit_boxes[0, :digits, 0])
                _number = "".join(str(labels[k]) for k in order)
            except grpc.aio.AioRpcError as error:
                return f"{error.code().name}: {error.details()}"
            return None

        yield send

    try:
        return await closed_loop(concurrency, seconds, 1.0, sender)
    finally:
        await channel.close()


def _row(way: str, result: LoadResult) -> dict[str, Any]:
    return {
        "way": way,
        "concurrency": result.concurrency,
        "requests": result.requests,
        "errors": result.errors,
        "first_error": result.first_error,
        "throughput_per_s": result.throughput,
        "p50_ms": result.percentile(50),
        "p99_ms": result.percentile(99),
    }


def run(concurrencies: list[int], seconds: float, pictures: int, device: str) -> dict[str, Any]:
    scenes = number_scenes(pictures)
    images = [s.pixels for s in scenes]
    stages = stage_payloads(images)
    pipeline = [_request("read_number", {"image": i[None]}).SerializeToString() for i in images]
    rows: list[dict[str, Any]] = []
    stage_rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory() as scratch,
        run_server(MODELS, Path(scratch), "--device", device, timeout=120) as server,
    ):
        for name, payloads in stages.items():  # each stage alone, at concurrency 1
            result = asyncio.run(run_load(server.url, payloads, 1, seconds / 2))
            stage_rows.append(_row(name, result))
        for concurrency in concurrencies:
            for way, payloads in (("pipeline", pipeline), ("slowest stage", stages["ssd"])):
                result = asyncio.run(run_load(server.url, payloads, concurrency, seconds))
                rows.append(_row(way, result))
            result = asyncio.run(hand_chain(server.url, images, concurrency, seconds))
            rows.append(_row("hand chain", result))
            for row in rows[-3:]:
                print(
                    f"c={concurrency:3d} {row['way']:14s} {row['throughput_per_s']:7.1f}/s "
                    f"p50 {row['p50_ms']:7.2f} ms p99 {row['p99_ms']:7.2f} ms "
                    f"errors {row['errors']}"
                )
    return {
        "device": device,
        "pictures": pictures,
        "seconds_each": seconds,
        "stages_alone_c1": stage_rows,
        "sum_of_stage_p50s_ms": sum(r["p50_ms"] for r in stage_rows),
        "rows": rows,
        "ratios": _ratios(rows, concurrencies),
    }


def _ratios(rows: list[dict[str, Any]], concurrencies: list[int]) -> dict[str, dict[str, float]]:
    ratios = {}
    for concurrency in concurrencies:
        at = {r["way"]: r for r in rows if r["concurrency"] == concurrency}
        pipe = at["pipeline"]["throughput_per_s"]
        ratios[str(concurrency)] = {
            "pipeline_vs_slowest_stage": pipe / max(at["slowest stage"]["throughput_per_s"], 1e-9),
            "pipeline_vs_hand_chain": pipe / max(at["hand chain"]["throughput_per_s"], 1e-9),
        }
    return ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int_list, default=[1, 16, 64])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured per way and level")
    parser.add_argument("--pictures", type=int, default=32, help="held-out house numbers sent")
    parser.add_argument("--out", type=Path, default=None, help="folder for the JSON and plot")
    parser.add_argument("--device", default="cpu", help="the server's --device (cpu, cuda)")
    args = parser.parse_args(argv)
    report = run(args.concurrency, args.seconds, args.pictures, args.device)
    c1 = next(r for r in report["rows"] if r["way"] == "pipeline" and r["concurrency"] == 1)
    print(
        "stages alone at c=1: "
        + ", ".join(f"{r['way']} {r['p50_ms']:.2f} ms" for r in report["stages_alone_c1"])
        + f"; sum {report['sum_of_stage_p50s_ms']:.2f} ms, pipeline p50 {c1['p50_ms']:.2f} ms"
    )
    for concurrency, ratio in report["ratios"].items():
        print(
            f"c={concurrency}: pipeline / slowest stage "
            f"{ratio['pipeline_vs_slowest_stage']:.2f}x, pipeline / hand chain "
            f"{ratio['pipeline_vs_hand_chain']:.2f}x"
        )
    if args.out:
        write_report(
            report,
            args.out / f"pipeline-read_number-{args.device}",
            x="concurrency",
            xlabel="concurrent clients",
            group=lambda row: (row["way"],),
            label=lambda key: key[0],
            panels=[
                Panel("throughput_per_s", "Pictures read per second", "pictures / s"),
                Panel("p50_ms", "Median latency", "ms"),
            ],
            title=f"read_number: pipeline, slowest stage alone, chain by hand ({args.device})",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
