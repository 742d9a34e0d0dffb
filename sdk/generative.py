"""Generative models: a class and seeds in, images out (a conditional GAN served).

>>> digits = client.generate(digit=7, n=16, seed=1)   # uint8 [16, 28, 28]
"""

from __future__ import annotations

import numpy as np

from . import _calls
from ._calls import Call
from .errors import DeepserveError

GENERATOR = "mnist_cgan"
MOST_AT_ONCE = 64
"""The bundled generator's max_batch_size: one request holds at most this many."""


def generate_call(model: str, digit: int, n: int, seed: int, version: str) -> Call:
    """One request for `n` images of `digit`, seeds seed .. seed + n - 1 (a seed names one
    image: the same seed gives the same digit again)."""
    if not 1 <= n <= MOST_AT_ONCE:
        raise DeepserveError(f"n is the number of images, 1 to {MOST_AT_ONCE}; got {n}")
    inputs = {
        "class": np.full((n, 1), digit, np.int64),
        "seed": np.arange(seed, seed + n, dtype=np.int64)[:, None],
    }
    return _calls.infer(model, inputs, ["image"], version)


def images(outputs: dict[str, np.ndarray]) -> np.ndarray:
    """[n, 28, 28, 1] -> [n, 28, 28]: grayscale digits as MNIST draws them."""
    return outputs["image"][..., 0]


def grid(digits: np.ndarray, columns: int = 8, scale: int = 4) -> np.ndarray:
    """Digits side by side, `columns` a row, each pixel scale x scale: one picture to look at."""
    count, height, width = digits.shape
    rows = -(-count // columns)
    sheet = np.zeros((rows * height, columns * width), np.uint8)
    for i, digit in enumerate(digits):
        r, c = divmod(i, columns)
        sheet[r * height : (r + 1) * height, c * width : (c + 1) * width] = digit
    return np.kron(sheet, np.ones((scale, scale), np.uint8))
