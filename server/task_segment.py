"""Segmentation post-processing: the model's class mask -> the original image's size (nearest
neighbour), raw or PNG."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ..v1 import vision_pb2 as vpb


def masks(
    mask_batch: np.ndarray, sizes: list[tuple[int, int]], labels: list[str], encoding: int
) -> list[vpb.Mask]:
    results = []
    for mask, (height, width) in zip(mask_batch, sizes, strict=True):
        if mask.shape != (height, width):
            mask = np.asarray(Image.fromarray(mask).resize((width, height), Image.NEAREST))
        if encoding == vpb.MASK_ENCODING_PNG:
            buffer = io.BytesIO()
            Image.fromarray(mask).save(buffer, format="PNG", optimize=False)
            data = buffer.getvalue()
        else:
            data = np.ascontiguousarray(mask, np.uint8).tobytes()
        results.append(
            vpb.Mask(height=height, width=width, encoding=encoding, data=data, labels=labels)
        )
    return results
