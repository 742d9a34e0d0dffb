"""MNIST in its published IDX format (gzip or not), from any folder that holds the files.

Offline, the 10,000-image test set alone is split: the first 8,000 for training and the last 2,000
held out (80 / 20 of whatever the folder holds). With the 60,000-image training files present,
the standard split is used. Where a machine has internet, `download_mnist` fetches the public
files through torchvision.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

DEFAULT_DATA = Path("../shared/data/mnist")
"""Where the training commands look for the MNIST IDX files unless told (`--data`)."""
TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
OFFLINE_TRAIN_SHARE = 0.8  # of the 10,000 test images: the first 8,000 train, 2,000 held out


def _open(folder: Path, stem: str) -> bytes:
    for name in (stem, f"{stem}.gz"):
        path = folder / name
        if path.is_file():
            data = path.read_bytes()
            return gzip.decompress(data) if name.endswith(".gz") else data
    raise FileNotFoundError(f"{stem}[.gz] not found in {folder}")


def read_idx(data: bytes) -> np.ndarray:
    """Decode one IDX file (magic: two zero bytes, a type code, the number of dimensions)."""
    zero, type_code, ndim = struct.unpack_from(">HBB", data, 0)
    if zero != 0 or type_code != 0x08:
        raise ValueError("not an unsigned-byte IDX file")
    shape = struct.unpack_from(f">{ndim}I", data, 4)
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as a gzip'd IDX file (used to ship small samples with the tests)."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + np.ascontiguousarray(array, np.uint8).tobytes(), 9))


@dataclass(frozen=True)
class Split:
    train_images: np.ndarray  # [N, 28, 28] uint8
    train_labels: np.ndarray  # [N] uint8
    test_images: np.ndarray
    test_labels: np.ndarray
    description: str


def load_split(folder: Path) -> Split:
    """The standard split when the training files are there, else the offline 8,000 / 2,000."""
    test_images = read_idx(_open(folder, TEST_IMAGES))
    test_labels = read_idx(_open(folder, TEST_LABELS))
    try:
        train_images = read_idx(_open(folder, TRAIN_IMAGES))
        train_labels = read_idx(_open(folder, TRAIN_LABELS))
    except FileNotFoundError:
        n = int(len(test_images) * OFFLINE_TRAIN_SHARE)
        return Split(
            test_images[:n],
            test_labels[:n],
            test_images[n:],
            test_labels[n:],
            f"offline split of the test set: first {n} for training, last "
            f"{len(test_images) - n} held out",
        )
    return Split(train_images, train_labels, test_images, test_labels, "standard 60k / 10k split")


def digits_as(images: np.ndarray, height: int, width: int, channels: int) -> np.ndarray:
    """[N, 28, 28] gray digits -> [N, H, W, C] uint8, resized bilinearly, gray in every channel."""
    if (height, width) == images.shape[1:]:
        resized = images
    else:
        resized = np.stack(
            [np.asarray(Image.fromarray(d).resize((width, height), Image.BILINEAR)) for d in images]
        )
    return np.ascontiguousarray(np.repeat(resized[..., None], channels, axis=-1))


def download_mnist(folder: Path) -> Path:
    """Fetch the public MNIST files with torchvision (needs internet); returns the raw folder."""
    from torchvision.datasets import MNIST

    MNIST(str(folder), train=True, download=True)
    MNIST(str(folder), train=False, download=True)
    return folder / "MNIST" / "raw"
