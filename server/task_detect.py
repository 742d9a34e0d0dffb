"""Detection post-processing: the model's padded detections -> boxes in the original image's
pixels, filtered by score, labelled."""

from __future__ import annotations

import numpy as np

from ..v1 import vision_pb2 as vpb

OUTPUTS = ("boxes", "scores", "classes", "count")


def detections(
    outputs: dict[str, np.ndarray],
    sizes: list[tuple[int, int]],
    input_size: tuple[int, int],
    labels: list[str],
    score_threshold: float,
    max_detections: int | None,
) -> list[vpb.Detections]:
    """outputs: boxes [N, K, 4] (x1 y1 x2 y2 pixels of the model input), scores [N, K],
    classes [N, K], count [N]; sizes: each image's original (height, width)."""
    in_h, in_w = input_size
    results = []
    for i, (height, width) in enumerate(sizes):
        count = int(outputs["count"][i])
        scores = outputs["scores"][i, :count]
        keep = np.flatnonzero(scores >= score_threshold)
        keep = keep[np.argsort(-scores[keep], kind="stable")]
        if max_detections is not None:
            keep = keep[:max_detections]
        scale = np.array([width / in_w, height / in_h, width / in_w, height / in_h], np.float32)
        boxes = outputs["boxes"][i, keep] * scale
        classes = outputs["classes"][i, keep]
        results.append(
            vpb.Detections(
                width=width,
                height=height,
                detections=[
                    vpb.Detection(
                        box=vpb.Box(x1=float(b[0]), y1=float(b[1]), x2=float(b[2]), y2=float(b[3])),
                        label=labels[int(c)] if int(c) < len(labels) else str(int(c)),
                        index=int(c),
                        score=float(outputs["scores"][i, k]),
                    )
                    for b, c, k in zip(boxes, classes, keep, strict=True)
                ],
            )
        )
    return results
