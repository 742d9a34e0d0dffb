"""Number scenes: house numbers of 2 to 6 real MNIST digits in a row on 320x320 canvases, for the
read_number pipeline and its held-out reading accuracy.

A number's digits share a height (28 to 80 px, each digit within 10 % of it) and an ink colour
that stands out from the background; each sits on a baseline jittered by up to 8 % of the
height, with gaps from a slight overlap to half a digit's width; the row is placed anywhere it
fits, on the backgrounds of training/scenes.py. Scene i of a seed is the same on every machine;
held-out scenes draw only held-out digits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scenes import INK, SIZE, _background, _ink

MIN_DIGITS, MAX_DIGITS = 2, 6
MIN_HEIGHT, MAX_HEIGHT = 28, 80


@dataclass(frozen=True)
class NumberScene:
    image: np.ndarray  # uint8 [SIZE, SIZE, 3]
    text: str  # the digits, left to right
    boxes: np.ndarray  # float32 [K, 4] x1 y1 x2 y2, pixels, left to right

    @property
    def labels(self) -> np.ndarray:
        """int64 [K], each box's digit (as Scene.labels, so a detector trains on both)."""
        return np.array([int(c) for c in self.text], np.int64)


def make_number_scene(digits: np.ndarray, labels: np.ndarray, seed: int) -> NumberScene:
    """One number scene from a pool of [N, 28, 28] digits; the same seed gives the same one."""
    rng = np.random.default_rng(seed)
    image = _background(rng)
    count = int(rng.integers(MIN_DIGITS, MAX_DIGITS + 1))
    picks = rng.integers(len(digits), size=count)
    height = int(rng.integers(MIN_HEIGHT, MAX_HEIGHT + 1))
    inks = [_ink(digits[p], max(12, round(height * rng.uniform(0.9, 1.1)))) for p in picks]
    gaps = [round(rng.uniform(-0.05, 0.5) * height * 0.6) for _ in range(count - 1)]
    width = sum(a.shape[1] for a in inks) + sum(gaps)
    while width >= SIZE - 4:  # too wide for the canvas: the same number, smaller
        inks = [
            _ink(digits[p], max(12, a.shape[0] * 3 // 4)) for p, a in zip(picks, inks, strict=True)
        ]
        gaps = [g * 3 // 4 for g in gaps]
        width = sum(a.shape[1] for a in inks) + sum(gaps)
    tallest = max(a.shape[0] for a in inks)
    jitter = max(1, round(0.08 * tallest))
    x = int(rng.integers(2, SIZE - width - 1))
    top = int(rng.integers(jitter, SIZE - tallest - jitter))
    under = image[top : top + tallest, x : x + width].mean((0, 1))
    colour = np.where(under > 127, rng.uniform(0, 60, 3), rng.uniform(195, 255, 3))
    boxes = []
    for index, alpha in enumerate(inks):
        h, w = alpha.shape
        y = top + (tallest - h) + int(rng.integers(-jitter, jitter + 1))
        region = image[y : y + h, x : x + w]
        region[:] = region * (1 - alpha[..., None]) + colour * alpha[..., None]
        ys, xs = np.nonzero(alpha > INK)
        boxes.append([x + xs.min(), y + ys.min(), x + xs.max() + 1, y + ys.max() + 1])
        x += w + (gaps[index] if index < len(gaps) else 0)
    return NumberScene(
        image=np.clip(image, 0, 255).astype(np.uint8),
        text="".join(str(int(labels[p])) for p in picks),
        boxes=np.asarray(boxes, np.float32),
    )


def make_number_scenes(
    digits: np.ndarray, labels: np.ndarray, count: int, seed: int
) -> list[NumberScene]:
    return [make_number_scene(digits, labels, seed * 1_000_003 + i) for i in range(count)]
