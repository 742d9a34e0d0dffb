"""Evaluation metrics: mAP at an IoU threshold (detection) and mean IoU (segmentation)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a [M, 4] with every box in b [N, 4] (x1 y1 x2 y2)."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def _average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision envelope (all-point interpolation, as PASCAL VOC 2010+)."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def mean_average_precision(
    predictions: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    truths: Sequence[tuple[np.ndarray, np.ndarray]],
    num_classes: int,
    iou_threshold: float = 0.5,
) -> tuple[float, list[float]]:
    """mAP over classes. predictions: per image (boxes, scores, labels); truths: (boxes, labels).
    A prediction is a true positive when it overlaps an unmatched true box of its class by at
    least the threshold, taken in descending score order."""
    per_class: list[float] = []
    for cls in range(num_classes):
        scored: list[tuple[float, int, np.ndarray]] = []
        total = 0
        matched: dict[int, np.ndarray] = {}
        for image, (_, labels) in enumerate(truths):
            count = int((labels == cls).sum())
            total += count
            matched[image] = np.zeros(count, bool)
        for image, (boxes, scores, labels) in enumerate(predictions):
            for box, score in zip(boxes[labels == cls], scores[labels == cls], strict=True):
                scored.append((float(score), image, box))
        if total == 0:
            continue
        scored.sort(key=lambda item: -item[0])
        hits = np.zeros(len(scored))
        for i, (_, image, box) in enumerate(scored):
            true_boxes = truths[image][0][truths[image][1] == cls]
            if not len(true_boxes):
                continue
            ious = box_iou(box[None], true_boxes)[0]
            best = int(ious.argmax())
            if ious[best] >= iou_threshold and not matched[image][best]:
                matched[image][best] = True
                hits[i] = 1
        tp = np.cumsum(hits)
        recall = tp / total
        precision = tp / np.arange(1, len(scored) + 1)
        per_class.append(_average_precision(recall, precision))
    return float(np.mean(per_class)) if per_class else 0.0, per_class


def mean_iou(
    predicted: Sequence[np.ndarray], truth: Sequence[np.ndarray], num_classes: int
) -> tuple[float, list[float]]:
    """Mean over classes of intersection / union, pixels summed over all images."""
    inter = np.zeros(num_classes)
    union = np.zeros(num_classes)
    for p, t in zip(predicted, truth, strict=True):
        for cls in range(num_classes):
            a, b = p == cls, t == cls
            inter[cls] += np.logical_and(a, b).sum()
            union[cls] += np.logical_or(a, b).sum()
    present = union > 0
    ious = np.where(present, inter / np.maximum(union, 1), np.nan)
    return float(np.nanmean(ious)), ious.tolist()
