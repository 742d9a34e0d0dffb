"""Real request payloads with their known answers: MNIST digits (label), digit scenes (digits
present), or any folder of images (no known answer: only the answer's shape is checked)."""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "data" / "mnist"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@dataclass(frozen=True)
class Payload:
    name: str
    pixels: np.ndarray
    """uint8 HxW or HxWxC: what is sent."""
    digits: tuple[int, ...] | None
    """The digits in the image (one for an MNIST digit), or None when unknown."""


def _read_idx(path: Path) -> np.ndarray:
    from deepserve.training.mnist_data import read_idx

    return read_idx(gzip.decompress(path.read_bytes()))


def mnist_digits(limit: int = 500) -> list[Payload]:
    images = _read_idx(SAMPLE / "t10k-images-idx3-ubyte-8000-8499.gz")
    labels = _read_idx(SAMPLE / "t10k-labels-idx1-ubyte-8000-8499.gz")
    return [
        Payload(f"mnist-{8000 + i}", images[i], (int(labels[i]),))
        for i in range(min(limit, len(images)))
    ]


def digit_scenes(count: int = 64, seed: int = 7) -> list[Payload]:
    from deepserve.training.scenes import make_scene

    images = _read_idx(SAMPLE / "t10k-images-idx3-ubyte-8000-8499.gz")
    labels = _read_idx(SAMPLE / "t10k-labels-idx1-ubyte-8000-8499.gz")
    scenes = [make_scene(images, labels, seed * 1_000_003 + i) for i in range(count)]
    return [
        Payload(f"scene-{i}", s.image, tuple(sorted(int(d) for d in s.labels)))
        for i, s in enumerate(scenes)
    ]


def number_scenes(count: int = 64, seed: int = 11) -> list[Payload]:
    """House numbers of 2 to 6 held-out digits; each payload's digits are the number's, left
    to right."""
    from deepserve.training.number_scenes import make_number_scenes

    images = _read_idx(SAMPLE / "t10k-images-idx3-ubyte-8000-8499.gz")
    labels = _read_idx(SAMPLE / "t10k-labels-idx1-ubyte-8000-8499.gz")
    scenes = make_number_scenes(images, labels, count, seed)
    return [
        Payload(f"number-{i}", s.image, tuple(int(d) for d in s.text)) for i, s in enumerate(scenes)
    ]


def image_folder(folder: Path) -> list[Payload]:
    payloads = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            with Image.open(path) as image:
                payloads.append(Payload(path.name, np.asarray(image.convert("RGB")), None))
    if not payloads:
        raise FileNotFoundError(f"no images in {folder}")
    return payloads


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
