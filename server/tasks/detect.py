"""Detection: the model's padded detections -> boxes in the original image's pixels, filtered
by score, labelled."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...v1 import vision_pb2 as vpb
from ..protocol.errors import TaskNotSupported
from .base import QueryParameter, Task
from .results import Box, Detection, Detections


@dataclass(frozen=True)
class DetectOptions:
    score_threshold: float | None = None
    """None: the model's `score_threshold` parameter (else 0.5)."""
    max_detections: int | None = None


class DetectTask(Task):
    name = "detection"
    verb = "detect"
    rpc = "Detect"
    query = (
        QueryParameter(
            "score_threshold", float, "keep boxes scoring at least this (default: model's)"
        ),
        QueryParameter("max_detections", int, "at most this many boxes per image"),
    )
    outputs = ("boxes", "scores", "classes", "count")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.default_threshold = self.number("score_threshold", 0.5)
        self.max_detections = int(self.number("max_detections", 0)) or None
        """The most boxes the graph returns per image (a cap on what a request asks)."""
        box_format = self.parameters.get("box_format", "xyxy_pixels")
        if box_format != "xyxy_pixels":
            raise TaskNotSupported(
                f"model '{self.model}': box_format '{box_format}' is not served (xyxy_pixels: "
                "corners in the model input's pixels)"
            )

    def finish(
        self, outputs: dict[str, np.ndarray], sizes: list[tuple[int, int]], options: DetectOptions
    ) -> list[Detections]:
        """boxes [N, K, 4] (x1 y1 x2 y2 in model-input pixels), scores [N, K], classes [N, K],
        count [N]."""
        threshold = (
            options.score_threshold
            if options.score_threshold is not None
            else self.default_threshold
        )
        in_h, in_w = self.image.height, self.image.width
        results = []
        for i, (height, width) in enumerate(sizes):
            count = int(outputs["count"][i])
            scores = outputs["scores"][i, :count]
            keep = np.flatnonzero(scores >= threshold)
            keep = keep[np.argsort(-scores[keep], kind="stable")]
            limit = options.max_detections or self.max_detections
            if limit is not None:
                keep = keep[:limit]
            scale = np.array([width / in_w, height / in_h, width / in_w, height / in_h], np.float32)
            boxes = outputs["boxes"][i, keep] * scale
            classes = outputs["classes"][i, keep]
            labels = self.labels
            found = [
                Detection(
                    Box(float(b[0]), float(b[1]), float(b[2]), float(b[3])),
                    labels[int(c)] if int(c) < len(labels) else str(int(c)),
                    int(c),
                    float(outputs["scores"][i, k]),
                )
                for b, c, k in zip(boxes, classes, keep, strict=True)
            ]
            results.append(Detections(width, height, found))
        return results

    @classmethod
    def options_from_query(cls, values: dict[str, Any], response_budget: int) -> DetectOptions:
        return DetectOptions(values["score_threshold"], values["max_detections"])

    @classmethod
    def options_from_message(cls, request: Any, response_budget: int) -> DetectOptions:
        return DetectOptions(
            request.score_threshold if request.HasField("score_threshold") else None,
            request.max_detections if request.HasField("max_detections") else None,
        )

    @classmethod
    def response_message(
        cls, model: str, version: str, results: list[Detections], options: DetectOptions
    ) -> vpb.DetectResponse:
        return vpb.DetectResponse(
            model=model,
            model_version=version,
            results=[
                vpb.Detections(
                    width=r.width,
                    height=r.height,
                    detections=[
                        vpb.Detection(
                            box=vpb.Box(x1=d.box.x1, y1=d.box.y1, x2=d.box.x2, y2=d.box.y2),
                            label=d.label,
                            index=d.index,
                            score=d.score,
                        )
                        for d in r.detections
                    ],
                )
                for r in results
            ],
        )

    @classmethod
    def results_json(
        cls, results: list[Detections], options: DetectOptions
    ) -> list[dict[str, Any]]:
        return [
            {
                "width": r.width,
                "height": r.height,
                "detections": [
                    {
                        "box": {"x1": d.box.x1, "y1": d.box.y1, "x2": d.box.x2, "y2": d.box.y2},
                        "label": d.label,
                        "index": d.index,
                        "score": d.score,
                    }
                    for d in r.detections
                ],
            }
            for r in results
        ]
