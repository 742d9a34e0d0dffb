"""Pictures of results, for people: labelled boxes, text read with its characters' boxes, and
a mask coloured over its image."""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw

from .results import Detection, Reading, Segmentation


def palette(count: int) -> np.ndarray:
    """`count` distinct RGB colours; class 0 (background) is left transparent by overlays."""
    colours = [colorsys.hsv_to_rgb(i / max(count, 1), 0.85, 1.0) for i in range(count)]
    return (np.array(colours) * 255).astype(np.uint8)


def draw_detections(image: Image.Image, detections: list[Detection]) -> Image.Image:
    canvas = image.convert("RGB")
    draw = ImageDraw.Draw(canvas)
    colours = palette(max((d.index for d in detections), default=0) + 1)
    for d in detections:
        colour = tuple(int(c) for c in colours[d.index])
        draw.rectangle(d.box.as_tuple(), outline=colour, width=2)
        text = f"{d.label}: {d.score:.2f}"
        left, top = d.box.x1, max(0.0, d.box.y1 - 12)
        draw.rectangle(draw.textbbox((left, top), text), fill=colour)
        draw.text((left, top), text, fill=(0, 0, 0))
    return canvas


def draw_reading(image: Image.Image, reading: Reading) -> Image.Image:
    """Each character's box in its own colour, and the text read across the top."""
    canvas = image.convert("RGB")
    draw = ImageDraw.Draw(canvas)
    colours = palette(max(len(reading.characters), 1))
    for i, character in enumerate(reading.characters):
        colour = tuple(int(c) for c in colours[i])
        draw.rectangle(character.box.as_tuple(), outline=colour, width=2)
        left, top = character.box.x1, character.box.y2 + 2
        draw.text((left, top), character.text, fill=colour)
    banner = f"read: {reading.text or '(nothing)'}"
    draw.rectangle(draw.textbbox((4, 4), banner), fill=(0, 0, 0))
    draw.text((4, 4), banner, fill=(255, 255, 255))
    return canvas


def overlay_mask(image: Image.Image, segmentation: Segmentation, alpha: float = 0.5) -> Image.Image:
    base = np.asarray(image.convert("RGB"), np.float32)
    mask = segmentation.mask
    colours = palette(max(len(segmentation.labels), int(mask.max()) + 1)).astype(np.float32)
    coloured = colours[mask]
    blend = np.where((mask > 0)[..., None], base * (1 - alpha) + coloured * alpha, base)
    return Image.fromarray(blend.astype(np.uint8))
