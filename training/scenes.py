"""Digit scenes: real MNIST digits pasted onto 320x320 canvases, for detection and segmentation.

Each scene has a few digits at random scales (about 20-90 px tall) and places, some
overlapping, in random colours on varied backgrounds (flat, gradient, noise, stripes). It comes
with its boxes (x1, y1, x2, y2 in pixels, tight around the digit's ink) and labels, and a
per-pixel class mask: 0 is background, 1 + d is digit d; a digit pasted later covers earlier
ones. Scene i of a seed is the same on every machine; training scenes draw only training digits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

SIZE = 320
MIN_HEIGHT, MAX_HEIGHT = 20, 90
INK = 0.5  # alpha above which a pixel belongs to the digit (mask and box)
MAX_OVERLAP = 0.3  # largest IoU a new digit's box may have with one already placed


@dataclass(frozen=True)
class Scene:
    image: np.ndarray  # uint8 [SIZE, SIZE, 3]
    boxes: np.ndarray  # float32 [K, 4] x1 y1 x2 y2, pixels
    labels: np.ndarray  # int64 [K], digit 0..9
    mask: np.ndarray  # uint8 [SIZE, SIZE], 0 background, 1 + digit


def _background(rng: np.random.Generator) -> np.ndarray:
    kind = rng.integers(4)
    base = rng.uniform(0, 255, 3)
    if kind == 0:  # flat
        image = np.broadcast_to(base, (SIZE, SIZE, 3)).copy()
    elif kind == 1:  # linear gradient between two colours
        other = rng.uniform(0, 255, 3)
        t = np.linspace(0, 1, SIZE)[:, None, None]
        image = base * (1 - t) + other * t
        image = np.broadcast_to(image, (SIZE, SIZE, 3)).copy()
        if rng.random() < 0.5:
            image = image.transpose(1, 0, 2).copy()
    elif kind == 2:  # smooth noise: a coarse random grid, upsampled
        coarse = rng.uniform(0, 255, (8, 8, 3)).astype(np.uint8)
        image = np.asarray(Image.fromarray(coarse).resize((SIZE, SIZE), Image.BILINEAR), float)
    else:  # stripes
        period = rng.integers(8, 40)
        other = rng.uniform(0, 255, 3)
        stripes = (np.arange(SIZE) // period) % 2
        image = np.where(stripes[:, None, None] == 1, base, other)
        image = np.broadcast_to(image, (SIZE, SIZE, 3)).copy()
    noise = rng.normal(0, rng.uniform(0, 12), (SIZE, SIZE, 1))
    return np.clip(image + noise, 0, 255)


def _ink(digit: np.ndarray, height: int) -> np.ndarray:
    """The digit's ink cropped tight and scaled to `height` px tall, as alpha in [0, 1]."""
    rows = np.flatnonzero(digit.max(1) > 0)
    cols = np.flatnonzero(digit.max(0) > 0)
    crop = digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    width = max(2, round(crop.shape[1] * height / crop.shape[0]))
    scaled = Image.fromarray(crop).resize((width, height), Image.BILINEAR)
    return np.asarray(scaled, np.float32) / 255.0


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    if not len(others):
        return np.zeros(0)
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / (area + areas - inter)


def make_scene(
    digits: np.ndarray, labels: np.ndarray, seed: int, min_digits: int = 1, max_digits: int = 5
) -> Scene:
    """One scene from a pool of [N, 28, 28] digits; the same seed gives the same scene."""
    rng = np.random.default_rng(seed)
    image = _background(rng)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    boxes: list[np.ndarray] = []
    classes: list[int] = []
    wanted = rng.integers(min_digits, max_digits + 1)
    for _ in range(wanted * 4):  # a few tries per digit to find a place that overlaps little
        if len(boxes) == wanted:
            break
        pick = rng.integers(len(digits))
        alpha = _ink(digits[pick], int(rng.integers(MIN_HEIGHT, MAX_HEIGHT + 1)))
        h, w = alpha.shape
        if w >= SIZE:
            continue
        x, y = int(rng.integers(0, SIZE - w + 1)), int(rng.integers(0, SIZE - h + 1))
        ys, xs = np.nonzero(alpha > INK)
        box = np.array([x + xs.min(), y + ys.min(), x + xs.max() + 1, y + ys.max() + 1], np.float32)
        if len(boxes) and _iou(box, np.stack(boxes)).max() > MAX_OVERLAP:
            continue
        # A colour that stands out from the background under the digit.
        under = image[y : y + h, x : x + w].mean((0, 1))
        colour = np.where(under > 127, rng.uniform(0, 60, 3), rng.uniform(195, 255, 3))
        region = image[y : y + h, x : x + w]
        region[:] = region * (1 - alpha[..., None]) + colour * alpha[..., None]
        mask[y : y + h, x : x + w][alpha > INK] = labels[pick] + 1
        boxes.append(box)
        classes.append(int(labels[pick]))
    return Scene(
        image=np.clip(image, 0, 255).astype(np.uint8),
        boxes=np.stack(boxes) if boxes else np.zeros((0, 4), np.float32),
        labels=np.asarray(classes, np.int64),
        mask=mask,
    )


def make_scenes(digits: np.ndarray, labels: np.ndarray, count: int, seed: int) -> list[Scene]:
    """`count` scenes drawn from `digits`; different seeds keep sets (training, held out) apart."""
    return [make_scene(digits, labels, seed * 1_000_003 + i) for i in range(count)]
