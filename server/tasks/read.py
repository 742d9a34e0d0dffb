"""Reading: a model (or pipeline) that gives each image's text and a box and score per
character -> the text, and each character's box in the original image's pixels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...v1 import vision_pb2 as vpb
from .base import Task
from .results import Box, Character, Reading


@dataclass(frozen=True)
class ReadOptions:
    """Reading has no options yet: the model decides what is a character."""


class ReadTask(Task):
    name = "read"
    verb = "read"
    rpc = "Read"
    outputs = ("number", "boxes", "confidences", "count")

    def finish(
        self, outputs: dict[str, np.ndarray], sizes: list[tuple[int, int]], options: ReadOptions
    ) -> list[Reading]:
        """number [N] (BYTES, the characters left to right), boxes [N, K, 4] (x1 y1 x2 y2 in
        model-input pixels, in the same order), confidences [N, K], count [N]."""
        in_h, in_w = self.image.height, self.image.width
        results = []
        for i, (height, width) in enumerate(sizes):
            text = _text(outputs["number"][i])
            count = min(int(outputs["count"][i]), len(text), outputs["boxes"].shape[1])
            scale = np.array([width / in_w, height / in_h, width / in_w, height / in_h], np.float32)
            boxes = outputs["boxes"][i, :count] * scale
            characters = [
                Character(
                    text[k],
                    Box(float(b[0]), float(b[1]), float(b[2]), float(b[3])),
                    float(outputs["confidences"][i, k]),
                )
                for k, b in enumerate(boxes)
            ]
            results.append(Reading(text, characters, width, height))
        return results

    @classmethod
    def options_from_query(cls, values: dict[str, Any], response_budget: int) -> ReadOptions:
        return ReadOptions()

    @classmethod
    def options_from_message(cls, request: Any, response_budget: int) -> ReadOptions:
        return ReadOptions()

    @classmethod
    def response_message(
        cls, model: str, version: str, results: list[Reading], options: ReadOptions
    ) -> vpb.ReadResponse:
        return vpb.ReadResponse(
            model=model,
            model_version=version,
            results=[
                vpb.Reading(
                    text=r.text,
                    characters=[
                        vpb.Character(
                            text=c.text,
                            box=vpb.Box(x1=c.box.x1, y1=c.box.y1, x2=c.box.x2, y2=c.box.y2),
                            score=c.score,
                        )
                        for c in r.characters
                    ],
                    width=r.width,
                    height=r.height,
                )
                for r in results
            ],
        )

    @classmethod
    def results_json(cls, results: list[Reading], options: ReadOptions) -> list[dict[str, Any]]:
        return [
            {
                "width": r.width,
                "height": r.height,
                "text": r.text,
                "characters": [
                    {
                        "text": c.text,
                        "box": {"x1": c.box.x1, "y1": c.box.y1, "x2": c.box.x2, "y2": c.box.y2},
                        "score": c.score,
                    }
                    for c in r.characters
                ],
            }
            for r in results
        ]


def _text(value: Any) -> str:
    """A BYTES element as text; bytes that are not UTF-8 come out replaced, never as an error
    after the work is done."""
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)
