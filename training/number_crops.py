"""Digits cut from house-number scenes by the served `digit_crops` graph itself, so the
classifier that reads them trains on what the pipeline will show it."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from .number_graphs import crops_graph
from .number_scenes import make_number_scenes

JITTER = 0.06
"""Each box edge moves by up to this share of the box's size: a detector's boxes are not the
ink's exact bounds."""
DETECTIONS = 100


def scene_crops(
    digits: np.ndarray, labels: np.ndarray, scenes: int, seed: int, batch: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [M, 28, 28] crops and int64 [M] labels of every digit of `scenes` number scenes."""
    session = ort.InferenceSession(
        crops_graph().SerializeToString(), providers=["CPUExecutionProvider"]
    )
    rng = np.random.default_rng(seed)
    made = make_number_scenes(digits, labels, scenes, seed)
    crops, classes = [], []
    for start in range(0, len(made), batch):
        chunk = made[start : start + batch]
        boxes = np.zeros((len(chunk), DETECTIONS, 4), np.float32)
        scores = np.zeros((len(chunk), DETECTIONS), np.float32)
        for row, scene in enumerate(chunk):
            size = np.tile(scene.boxes[:, 2:] - scene.boxes[:, :2], 2)
            moved = scene.boxes + rng.uniform(-JITTER, JITTER, scene.boxes.shape) * size
            boxes[row, : len(moved)] = moved
            scores[row, : len(moved)] = 0.9
        out, _, kept = session.run(
            None, {"image": np.stack([s.image for s in chunk]), "boxes": boxes, "scores": scores}
        )
        # A crop per digit kept, scene after scene; within a scene by score, and equal
        # scores keep the scene's order.
        start = 0
        for row, scene in enumerate(chunk):
            found = int((kept[row] > 0).sum())
            if found == len(scene.text):
                crops.append(out[start : start + found, ..., 0])
                classes.append(scene.labels)
            start += found
    return np.concatenate(crops), np.concatenate(classes)
