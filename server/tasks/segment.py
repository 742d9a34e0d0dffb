"""Segmentation: the model's class mask -> the original image's size (nearest neighbour)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..protocol.errors import LimitExceeded
from .base import Task
from .results import Mask


@dataclass(frozen=True)
class SegmentOptions:
    raw: bool = True
    """The transport sends one byte a pixel (not PNG / RLE): its size is known before the work."""
    response_budget: int = 1 << 62
    """Bytes a response may carry."""


class SegmentTask(Task):
    name = "segmentation"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not self.labels and self.parameters.get("mask_labels"):
            # Without a label file, the class names the exporter wrote into the config.
            self.labels = self.parameters["mask_labels"].split(",")

    def check_sizes(self, sizes: list[tuple[int, int]], options: SegmentOptions) -> None:
        raw_bytes = sum(h * w for h, w in sizes)
        if options.raw and raw_bytes > options.response_budget:
            raise LimitExceeded(
                f"the raw masks of these images would take {raw_bytes} bytes, more than the "
                f"response limit of {options.response_budget} bytes (max_message_mb); ask for "
                "PNG masks (MASK_ENCODING_PNG; over HTTP ?mask=png), or send fewer or smaller "
                "images"
            )

    def finish(
        self, outputs: dict[str, np.ndarray], sizes: list[tuple[int, int]], options: SegmentOptions
    ) -> list[Mask]:
        masks = []
        for mask, (height, width) in zip(outputs[self.output_names[0]], sizes, strict=True):
            if mask.shape != (height, width):
                mask = np.asarray(
                    Image.fromarray(mask).resize((width, height), Image.Resampling.NEAREST)
                )
            masks.append(Mask(np.ascontiguousarray(mask, np.uint8), self.labels))
        return masks


def check_encoded_size(encoded: int, budget: int) -> None:
    """Masks whose encoding (PNG, run lengths) is only known after the work: refuse an answer
    past the response limit, on every transport alike."""
    if encoded > budget:
        raise LimitExceeded(
            f"the masks take {encoded} bytes, more than the response limit of {budget} "
            "bytes (max_message_mb); send fewer or smaller images"
        )
