"""The scene families' held-out sets and how each is scored, with numpy only: the training
scripts and the precision checks measure the same scenes the same way."""

from __future__ import annotations

import numpy as np

from .metrics import mean_average_precision, mean_iou
from .number_scenes import NumberScene, make_number_scenes
from .scenes import Scene, make_scenes

DETECTION_SEED = 424242
SEGMENTATION_SEED = 515151
NUMBER_SEED = 616161
SEGMENTATION_CLASSES = 11
"""Background and the ten digits."""


def detection_scenes(split, count: int, seed: int = DETECTION_SEED) -> list[Scene]:
    return make_scenes(split.test_images, split.test_labels, count, seed)


def number_scenes(split, count: int) -> list[NumberScene]:
    """House numbers of 2 to 6 held-out digits: the read_number pipeline's reading test."""
    return make_number_scenes(split.test_images, split.test_labels, count, NUMBER_SEED)


def segmentation_scenes(split, count: int) -> list[Scene]:
    return make_scenes(split.test_images, split.test_labels, count, SEGMENTATION_SEED)


def detections(outputs) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A detector's padded outputs (boxes, scores, classes, count) as each image's own rows."""
    boxes, scores, classes, count = (np.asarray(o) for o in outputs)
    return [
        (boxes[i, : count[i]], scores[i, : count[i]], classes[i, : count[i]])
        for i in range(len(count))
    ]


def detection_map(run, scenes: list[Scene], batch: int = 16) -> tuple[float, list[float]]:
    """mAP@0.5 (and per class) of `run`, uint8 images -> the detector's outputs."""
    found = []
    for start in range(0, len(scenes), batch):
        images = np.stack([s.image for s in scenes[start : start + batch]])
        found += detections(run(images))
    truths = [(s.boxes, s.labels) for s in scenes]
    return mean_average_precision(found, truths, 10, 0.5)


def segmentation_miou(run, scenes: list[Scene], batch: int = 8) -> tuple[float, list[float]]:
    """Mean IoU (and per class) of `run`, uint8 images -> class masks."""
    predicted = []
    for start in range(0, len(scenes), batch):
        predicted += list(run(np.stack([s.image for s in scenes[start : start + batch]])))
    return mean_iou(predicted, [s.mask for s in scenes], SEGMENTATION_CLASSES)
