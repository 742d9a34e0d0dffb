"""Served answers on a device checked against in-process ONNX Runtime on the CPU (FP32).

    python -m loadtests.answers_check --device cuda --model-repository models \
        --extra-repository /tmp/deepserve-gpu/models --out results

Every model of the repositories (FP16 variants `<model>_fp16` against their FP32 source), sent
as raw tensors over ModelInfer to a server on `--device`. Classifiers must agree on top-1 for
at least 99.5 % of the 500 held-out digits. Detectors must find every object the CPU shows
(score above the config's threshold; same class, box IoU at least 0.85, score within 0.02) in
at least 99 % of 100 scenes. Segmenters must agree on at least 99.5 % of the pixels of 20
scenes. Writes answers-<device>.json; exit 1 when a model misses its bar.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import tritonclient.grpc as triton

from deepserve.training.metrics import box_iou
from deepserve.training.mnist_data import digits_as
from deepserve.training.scenes import make_scene

from .local_server import local_server
from .models import read_config
from .payloads import mnist_digits

TOP1_AGREEMENT = 0.995
SCENE_AGREEMENT = 0.99
PIXEL_AGREEMENT = 0.995
BOX_IOU = 0.85  # NMS may keep a neighbouring anchor of about the same score
SCORE_TOLERANCE = 0.02
BENCHMARK_MODELS = ("resnet50",)
"""Random weights: their top classes are near ties, nothing for a precision check to hold."""


def checked_models(repositories: Sequence[Path | None]) -> dict[str, Path]:
    """{name: folder} of the image models in these repositories that the check serves: all
    but the random-weight benchmark models and their FP16 variants (the sequence and text
    models have checks of their own)."""
    sources: dict[str, Path] = {}
    for folder in filter(None, repositories):
        for model_dir in sorted(folder.iterdir()):
            benchmark_only = model_dir.name.removesuffix("_fp16") in BENCHMARK_MODELS
            config = model_dir / "config.pbtxt"
            if config.is_file() and not benchmark_only and _takes_images(config):
                sources[model_dir.name] = model_dir
    return sources


def _takes_images(path: Path) -> bool:
    config = read_config(path.parent)
    return bool(config.input) and len(config.input[0].dims) == 3


def _digit_images(height: int, width: int, channels: int) -> np.ndarray:
    return digits_as(np.stack([p.pixels for p in mnist_digits()]), height, width, channels)


def _scenes(count: int, size: int | None = None) -> np.ndarray:
    payloads = mnist_digits()
    digits = np.stack([p.pixels for p in payloads])
    labels = np.array([p.digits[0] for p in payloads])
    images = [make_scene(digits, labels, seed).image for seed in range(count)]
    return np.stack(images if size is None else [i[:size, :size] for i in images])


def _served(client: triton.InferenceServerClient, model: str, images: np.ndarray, chunk: int):
    """Outputs of the served model, `chunk` images a request, concatenated."""
    config = client.get_model_config(model).config
    names = [o.name for o in config.output]
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for start in range(0, len(images), chunk):
        batch = images[start : start + chunk]
        tensor = triton.InferInput(config.input[0].name, list(batch.shape), "UINT8")
        tensor.set_data_from_numpy(batch)
        result = client.infer(
            model, [tensor], outputs=[triton.InferRequestedOutput(n) for n in names]
        )
        for name in names:
            parts[name].append(result.as_numpy(name))
    return {n: np.concatenate(p) for n, p in parts.items()}


def _reference(path: Path, images: np.ndarray, chunk: int) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for start in range(0, len(images), chunk):
        for name, value in zip(
            names, session.run(names, {"image": images[start : start + chunk]}), strict=True
        ):
            parts[name].append(value)
    return {n: np.concatenate(p) for n, p in parts.items()}


def _kept(found: dict, i: int, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image i's detections the task API would show (score at least the config's threshold),
    leaving out those within the score tolerance of it, which either side may keep."""
    count = int(found["count"][i])
    scores = found["scores"][i, :count]
    keep = scores >= threshold + SCORE_TOLERANCE
    boxes, classes = found["boxes"][i, :count][keep], found["classes"][i, :count][keep]
    order = np.lexsort((boxes[:, 0], classes))
    return boxes[order], classes[order], scores[keep][order]


def _same_detections(got: dict, want: dict, i: int, threshold: float) -> bool:
    boxes, classes, scores = _kept(got, i, threshold - SCORE_TOLERANCE)
    want_boxes, want_classes, want_scores = _kept(want, i, threshold)
    if len(classes) < len(want_classes):
        return False
    # Every detection the CPU shows is there, at the same place, with about the same score.
    matched = 0
    for box, label, score in zip(want_boxes, want_classes, want_scores, strict=True):
        close = (classes == label) & (box_iou(boxes, box[None])[:, 0] >= BOX_IOU)
        close &= np.abs(scores - score) <= SCORE_TOLERANCE
        matched += bool(close.any())
    return matched == len(want_classes)


def check_model(client, model: str, source_dir: Path) -> dict[str, Any]:
    """One served model against the CPU's answers of `source_dir`'s FP32 model."""
    config = read_config(source_dir)
    task = config.parameters["task"].string_value if "task" in config.parameters else ""
    path = source_dir / "1" / "model.onnx"
    if task == "detection":
        images = _scenes(100)
        got, want = _served(client, model, images, 8), _reference(path, images, 8)
        threshold = float(config.parameters["score_threshold"].string_value or 0.3)
        share = np.mean([_same_detections(got, want, i, threshold) for i in range(len(images))])
        return {"check": "same detections", "share": float(share), "bar": SCENE_AGREEMENT,
                "of": len(images)}  # fmt: skip
    if task == "segmentation":
        images = _scenes(20, 256)
        got, want = _served(client, model, images, 4), _reference(path, images, 4)
        share = float(np.mean(got["mask"] == want["mask"]))
        return {"check": "same mask pixels", "share": share, "bar": PIXEL_AGREEMENT,
                "of": int(want["mask"].size)}  # fmt: skip
    height, width, channels = (int(d) for d in config.input[0].dims)
    images = _digit_images(height, width, channels)
    chunk = max(1, min(config.max_batch_size, 64))
    got, want = _served(client, model, images, chunk), _reference(path, images, chunk)
    name = config.output[0].name
    share = float(np.mean(got[name].argmax(1) == want[name].argmax(1)))
    return {"check": "same top-1", "share": share, "bar": TOP1_AGREEMENT, "of": len(images)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    parser.add_argument("--model-repository", type=Path, default=Path("models"))
    parser.add_argument("--extra-repository", type=Path, help="more models (FP16 variants)")
    parser.add_argument(
        "--models", help="comma-separated names (default: all but the random-weight resnet50s)"
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        repository = scratch / "models"
        sources = checked_models([args.model_repository, args.extra_repository])
        for name, model_dir in sources.items():
            shutil.copytree(model_dir, repository / name, dirs_exist_ok=True)
        wanted = args.models.split(",") if args.models else sorted(sources)
        report: dict[str, Any] = {"device": args.device, "models": {}}
        with local_server(repository, scratch / "server.log", "--device", args.device) as url:
            client = triton.InferenceServerClient(url)
            for model in wanted:
                source = sources.get(model.removesuffix("_fp16"), sources[model])
                result = check_model(client, model, source)
                result["passed"] = result["share"] >= result["bar"]
                report["models"][model] = result
                print(
                    f"{model:<24} {result['check']:<16} {result['share']:.4f} of {result['of']} "
                    f"(bar {result['bar']}) {'ok' if result['passed'] else 'MISSED'}",
                    flush=True,
                )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"answers-{args.device}.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0 if all(r["passed"] for r in report["models"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
