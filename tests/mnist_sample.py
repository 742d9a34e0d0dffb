"""The committed MNIST sample (500 held-out test digits) for tests."""

from __future__ import annotations

import gzip
from functools import cache
from pathlib import Path

import numpy as np

from deepserve.training.mnist_data import read_idx

SAMPLE = Path(__file__).resolve().parent / "data" / "mnist"


@cache
def digits() -> tuple[np.ndarray, np.ndarray]:
    """images uint8 [500, 28, 28], labels uint8 [500]."""
    images = read_idx(
        gzip.decompress((SAMPLE / "t10k-images-idx3-ubyte-8000-8499.gz").read_bytes())
    )
    labels = read_idx(
        gzip.decompress((SAMPLE / "t10k-labels-idx1-ubyte-8000-8499.gz").read_bytes())
    )
    return images, labels
