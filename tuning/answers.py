"""Real inputs for a tuned model and the check of its answers: every configuration must answer
what the model's own configuration answers (the same classes, detections, mask pixels)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tritonclient.grpc as triton
from tritonclient.grpc import model_config_pb2 as mc

from deepserve.training.mnist_data import digits_as

from ..loadtests.payloads import digit_scenes, mnist_digits

SAME_PRECISION_AGREEMENT = 0.97
"""Batch sizes, threads and graph rewrites change float sums a little: a near tie may flip."""
OTHER_PRECISION_AGREEMENT = 0.9
"""A lower precision is held to its own held-out metric by the command that made it."""
SCORE_MIN = 0.5


def _task(config: mc.ModelConfig) -> str:
    return config.parameters["task"].string_value if "task" in config.parameters else ""


def real_inputs(config: mc.ModelConfig, count: int = 32) -> dict[str, np.ndarray]:
    """`count` inputs of the model: digits or scenes of held-out MNIST digits for image models
    (at the size they are served at), seeded random values for anything else."""
    rng = np.random.default_rng(5)
    dims = list(config.input[0].dims) if config.input else []
    if len(config.input) == 1 and config.input[0].data_type == mc.TYPE_UINT8 and len(dims) == 3:
        height, width, channels = (
            int(config.parameters[k].string_value) if d < 0 else d
            for k, d in zip(("image_height", "image_width", "image_channels"), dims, strict=True)
        )
        try:
            images = _images(_task(config), count, height, width, channels)
        except FileNotFoundError:  # an installed package without the repository's sample
            images = rng.integers(0, 256, (count, height, width, channels), dtype=np.uint8)
        return {config.input[0].name: images}
    feeds = {}
    for tensor in config.input:
        shape = [count, *(1 if d < 0 else d for d in tensor.dims)]
        if tensor.data_type == mc.TYPE_FP32:
            feeds[tensor.name] = rng.standard_normal(shape).astype(np.float32)
        else:
            feeds[tensor.name] = rng.integers(0, 10, shape).astype(_NUMPY[tensor.data_type])
    return feeds


def _images(task: str, count: int, height: int, width: int, channels: int) -> np.ndarray:
    if task in ("detection", "segmentation"):
        scenes = np.stack([p.pixels for p in digit_scenes(count)])
        if scenes.shape[1:3] != (height, width):
            scenes = np.stack([_resize(s, height, width) for s in scenes])
        return np.ascontiguousarray(scenes[..., :channels])
    digits = np.stack([p.pixels for p in mnist_digits(count)])
    return digits_as(digits, height, width, channels)


_NUMPY = {mc.TYPE_UINT8: np.uint8, mc.TYPE_INT32: np.int32, mc.TYPE_INT64: np.int64}
_WIRE = {np.dtype(np.uint8): "UINT8", np.dtype(np.float32): "FP32", np.dtype(np.int32): "INT32",
         np.dtype(np.int64): "INT64"}  # fmt: skip


def wire_type(values: np.ndarray) -> str:
    return _WIRE[values.dtype]


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))


def served_answers(
    client: triton.InferenceServerClient,
    model: str,
    config: mc.ModelConfig,
    inputs: dict[str, np.ndarray],
) -> list[tuple]:
    """One comparable answer per input row (per pixel for masks), from the served model."""
    count = len(next(iter(inputs.values())))
    chunk = max(min(config.max_batch_size, 8), 1)
    answers: list[tuple] = []
    for start in range(0, count, chunk):
        request = []
        for name, values in inputs.items():
            part = values[start : start + chunk] if config.max_batch_size > 0 else values[start]
            tensor = triton.InferInput(name, list(part.shape), wire_type(part))
            tensor.set_data_from_numpy(np.ascontiguousarray(part))
            request.append(tensor)
        result = client.infer(model, request, timeout=60)
        outputs = [result.as_numpy(o.name) for o in config.output]
        if config.max_batch_size <= 0:
            outputs = [o[None] for o in outputs]
        answers += _comparable(config, outputs)
    return answers


def _comparable(config: mc.ModelConfig, outputs: Sequence[np.ndarray]) -> list[tuple]:
    task = _task(config)
    names = [o.name for o in config.output]
    if task == "detection" and {"scores", "classes"} <= set(names):
        scores, classes = outputs[names.index("scores")], outputs[names.index("classes")]
        return [
            tuple(sorted(found[score >= SCORE_MIN].astype(int).tolist()))
            for score, found in zip(scores, classes, strict=True)
        ]
    if task == "segmentation":
        return [(int(v),) for v in np.asarray(outputs[0]).reshape(-1)]
    first = np.asarray(outputs[0])
    if first.dtype.kind == "f" and first.ndim >= 2:  # scores of classes: the top one's index
        top = first.reshape(len(first), -1, first.shape[-1]).argmax(-1)
        return [tuple(row) for row in top.tolist()]
    return [tuple(np.asarray(row).reshape(-1).tolist()) for row in first]


def agreement(reference: Sequence[tuple], answers: Sequence[tuple]) -> float:
    if len(reference) != len(answers) or not reference:
        return 0.0
    return float(np.mean([a == b for a, b in zip(reference, answers, strict=True)]))
