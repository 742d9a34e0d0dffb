"""What the tasks answer, the same for every transport (each encodes them its own way)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True, slots=True)
class Label:
    label: str
    index: int
    score: float


@dataclass(frozen=True, slots=True)
class Classification:
    labels: list[Label]
    """Best first."""


@dataclass(frozen=True, slots=True)
class Box:
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass(frozen=True, slots=True)
class Detection:
    box: Box
    label: str
    index: int
    score: float


@dataclass(frozen=True, slots=True)
class Detections:
    width: int
    height: int
    detections: list[Detection]


@dataclass(frozen=True, slots=True)
class Mask:
    """A class index per pixel at the original image's size, and the classes' labels."""

    mask: np.ndarray
    labels: list[str]

    @property
    def height(self) -> int:
        return int(self.mask.shape[0])

    @property
    def width(self) -> int:
        return int(self.mask.shape[1])

    def png(self) -> bytes:
        """The mask as a single-channel 8-bit PNG (class index per pixel)."""
        buffer = io.BytesIO()
        Image.fromarray(self.mask).save(buffer, format="PNG", optimize=False)
        return buffer.getvalue()


@dataclass(frozen=True, slots=True)
class Character:
    text: str
    box: Box
    score: float


@dataclass(frozen=True, slots=True)
class Reading:
    text: str
    """The characters left to right."""
    characters: list[Character]
    width: int
    height: int
