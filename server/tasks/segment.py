"""Segmentation: the model's class mask -> the original image's size (nearest neighbour)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ...v1 import vision_pb2 as vpb
from ..protocol.errors import LimitExceeded
from .base import QueryParameter, Task
from .results import Mask

MASK_ENCODINGS = ("png", "rle", "raw")
"""Over HTTP: PNG in base64, [class, run length] pairs, or one byte a pixel in base64."""


@dataclass(frozen=True)
class SegmentOptions:
    raw: bool = True
    """The transport sends one byte a pixel (not PNG / RLE): its size is known before the work."""
    response_budget: int = 1 << 62
    """Bytes a response may carry."""
    encoding: str = "raw"
    """How the masks are sent: one of MASK_ENCODINGS."""


def _rle(mask: np.ndarray) -> list[list[int]]:
    """Row-major runs as [class index, run length] pairs."""
    flat = mask.reshape(-1)
    if flat.size == 0:
        return []
    starts = np.flatnonzero(np.concatenate(([True], flat[1:] != flat[:-1])))
    lengths = np.diff(np.concatenate((starts, [flat.size])))
    return [[int(flat[s]), int(n)] for s, n in zip(starts, lengths, strict=True)]


def _mask_json(result: Mask, encoding: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "width": result.width,
        "height": result.height,
        "labels": result.labels,
        "encoding": encoding,
    }
    if encoding == "png":
        entry["mask"] = base64.b64encode(result.png()).decode()
    elif encoding == "rle":
        entry["counts"] = _rle(result.mask)
    else:
        entry["mask"] = base64.b64encode(result.mask.tobytes()).decode()
    return entry


class SegmentTask(Task):
    name = "segmentation"
    verb = "segment"
    rpc = "Segment"
    query = (
        QueryParameter(
            "mask", str, "png (default, base64), rle ([class, run] pairs), raw", MASK_ENCODINGS
        ),
    )

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

    @classmethod
    def options_from_query(cls, values: dict[str, Any], response_budget: int) -> SegmentOptions:
        encoding = values["mask"] or "png"
        return SegmentOptions(encoding == "raw", response_budget, encoding)

    @classmethod
    def options_from_message(cls, request: Any, response_budget: int) -> SegmentOptions:
        as_png = request.mask_encoding == vpb.MASK_ENCODING_PNG
        return SegmentOptions(not as_png, response_budget, "png" if as_png else "raw")

    @classmethod
    def response_message(
        cls, model: str, version: str, results: list[Mask], options: SegmentOptions
    ) -> vpb.SegmentResponse:
        as_png = options.encoding == "png"
        masks = [
            vpb.Mask(
                height=m.height,
                width=m.width,
                encoding=vpb.MASK_ENCODING_PNG if as_png else vpb.MASK_ENCODING_RAW,
                data=m.png() if as_png else m.mask.tobytes(),
                labels=m.labels,
            )
            for m in results
        ]
        check_encoded_size(sum(len(m.data) for m in masks), options.response_budget)
        return vpb.SegmentResponse(model=model, model_version=version, results=masks)

    @classmethod
    def results_json(cls, results: list[Mask], options: SegmentOptions) -> list[dict[str, Any]]:
        masks = [_mask_json(r, options.encoding) for r in results]
        # Run lengths: at least 8 bytes of JSON a run.
        encoded = sum(len(m["mask"]) if "mask" in m else 8 * len(m["counts"]) for m in masks)
        check_encoded_size(encoded, options.response_budget)
        return masks


def check_encoded_size(encoded: int, budget: int) -> None:
    """Masks whose encoding (PNG, run lengths) is only known after the work: refuse an answer
    past the response limit, on every transport alike."""
    if encoded > budget:
        raise LimitExceeded(
            f"the masks take {encoded} bytes, more than the response limit of {budget} "
            "bytes (max_message_mb); send fewer or smaller images"
        )
