"""Held-out metrics of a model and its lower-precision variant, side by side, with ONNX Runtime
on the CPU: digit accuracy for classifiers of digits, CIFAR-10 accuracy when its test set is
given, mAP@0.5 for the detector, mean IoU for the segmenter, and otherwise how often the
variant's top-1 agrees with the source's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from .held_out import (
    detection_map,
    detection_scenes,
    segmentation_miou,
    segmentation_scenes,
)
from .mnist_data import digits_as, load_split
from .model_files import cpu_session

DIGITS = [str(d) for d in range(10)]
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
AGREEMENT_IMAGES = 1000
DETECTION_SCENES = 500
SEGMENTATION_SCENES = 200


def label_names(config: mc.ModelConfig, model_dir: Path) -> list[str]:
    for output in config.output:
        if output.label_filename and (model_dir / output.label_filename).is_file():
            return (model_dir / output.label_filename).read_text().split()
    return []


def read_cifar10_test(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10's binary test batch: 10,000 records of 1 label byte and a 3x32x32 image."""
    records = np.fromfile(folder / "test_batch.bin", np.uint8).reshape(-1, 1 + 3 * 32 * 32)
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), records[:, 0].astype(np.int64)


def _top1(path: Path, images: np.ndarray, chunk: int = 256) -> np.ndarray:
    session = cpu_session(path)
    name = session.get_inputs()[0].name
    return np.concatenate(
        [
            session.run(None, {name: images[i : i + chunk]})[0].argmax(1)
            for i in range(0, len(images), chunk)
        ]
    )


def _classification(
    config: mc.ModelConfig, labels: list[str], fp32: Path, fp16: Path, data: Path, cifar10
) -> dict:
    height, width, channels = (int(d) for d in config.input[0].dims)
    if labels == CIFAR10 and cifar10 is not None:
        images, truth = read_cifar10_test(cifar10)
        return {
            "metric": "top-1 accuracy",
            "held_out": f"{len(images)} CIFAR-10 test images",
            "unit": "fraction",
            "fp32": float((_top1(fp32, images) == truth).mean()),
            "fp16": float((_top1(fp16, images) == truth).mean()),
        }
    split = load_split(data)
    if labels == DIGITS:
        images = digits_as(split.test_images, height, width, channels)
        return {
            "metric": "top-1 accuracy",
            "held_out": f"{len(images)} held-out MNIST digits",
            "unit": "fraction",
            "fp32": float((_top1(fp32, images) == split.test_labels).mean()),
            "fp16": float((_top1(fp16, images) == split.test_labels).mean()),
        }
    count = AGREEMENT_IMAGES if height * width <= 64 * 64 else AGREEMENT_IMAGES // 5  # CPU time
    images = digits_as(split.test_images[:count], height, width, channels)
    return {
        "metric": "top-1 agreement with FP32",
        "held_out": f"{len(images)} held-out MNIST digits as {height}x{width} images",
        "unit": "fraction",
        "fp32": 1.0,
        "fp16": float((_top1(fp32, images) == _top1(fp16, images)).mean()),
        "note": "No labelled data of this model's classes is here (for CIFAR-10, --cifar10 "
        "DIR measures accuracy), so this is how often the lower-precision variant picks "
        "FP32's class.",
    }


def _on_both(fp32: Path, fp16: Path, measure, all_outputs: bool) -> dict[str, float]:
    """`measure(run)` of each model, `run` taking uint8 images to its outputs (or first one)."""
    found = {}
    for precision, path in (("fp32", fp32), ("fp16", fp16)):
        session = cpu_session(path)

        def run(images: np.ndarray, session=session):
            outputs = session.run(None, {"image": images})
            return outputs if all_outputs else outputs[0]

        found[precision] = measure(run)
    return found


def _detection(fp32: Path, fp16: Path, data: Path) -> dict:
    scenes = detection_scenes(load_split(data), DETECTION_SCENES)
    found = _on_both(fp32, fp16, lambda run: detection_map(run, scenes)[0], all_outputs=True)
    return {"metric": "mAP@0.5", "held_out": f"{len(scenes)} held-out scenes", "unit": "fraction",
            **found}  # fmt: skip


def _segmentation(fp32: Path, fp16: Path, data: Path) -> dict:
    scenes = segmentation_scenes(load_split(data), SEGMENTATION_SCENES)
    found = _on_both(fp32, fp16, lambda run: segmentation_miou(run, scenes)[0], all_outputs=False)
    return {"metric": "mean IoU", "held_out": f"{len(scenes)} held-out scenes", "unit": "fraction",
            **found}  # fmt: skip


def compare(
    config: mc.ModelConfig,
    model_dir: Path,
    fp32: Path,
    fp16: Path,
    data: Path,
    cifar10: Path | None = None,
) -> dict:
    """{'metric', 'held_out', 'unit', 'fp32', 'fp16'[, 'note']} for the config's task."""
    task = config.parameters["task"].string_value if "task" in config.parameters else ""
    if task == "detection":
        return _detection(fp32, fp16, data)
    if task == "segmentation":
        return _segmentation(fp32, fp16, data)
    return _classification(config, label_names(config, model_dir), fp32, fp16, data, cifar10)
