"""What the SDK returns: small frozen dataclasses that print well."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Label:
    label: str
    index: int
    score: float

    def __str__(self) -> str:
        return f"{self.label} ({self.score:.3f})"


@dataclass(frozen=True)
class Classification:
    """Top labels of one image, best first.

    >>> result = client.classify("digit.png", model="mnist")
    >>> result.label, result.score
    ('7', 0.998...)
    """

    labels: tuple[Label, ...]

    @property
    def label(self) -> str:
        return self.labels[0].label

    @property
    def index(self) -> int:
        return self.labels[0].index

    @property
    def score(self) -> float:
        return self.labels[0].score

    def __str__(self) -> str:
        return ", ".join(str(label) for label in self.labels)


@dataclass(frozen=True)
class Box:
    """Corners in the original image's pixels (x right, y down)."""

    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)


@dataclass(frozen=True)
class Detection:
    box: Box
    label: str
    index: int
    score: float

    def __str__(self) -> str:
        b = self.box
        return (
            f"{self.label} ({self.score:.3f}) at [{b.x1:.0f}, {b.y1:.0f}, {b.x2:.0f}, {b.y2:.0f}]"
        )


@dataclass(frozen=True)
class Character:
    text: str
    box: Box
    score: float

    def __str__(self) -> str:
        b = self.box
        return f"{self.text} ({self.score:.3f}) at [{b.x1:.0f}, {b.y1:.0f}, {b.x2:.0f}, {b.y2:.0f}]"


@dataclass(frozen=True)
class Reading:
    """The text of one image, and each character's box, left to right.

    >>> reading = client.read("house.png")
    >>> reading.text
    '4071'
    """

    text: str
    characters: tuple[Character, ...]

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Segmentation:
    """A class index per pixel of the original image; labels[i] names class i."""

    mask: np.ndarray = field(repr=False)
    labels: tuple[str, ...]

    @property
    def classes_present(self) -> list[str]:
        return [self.labels[i] if i < len(self.labels) else str(i) for i in np.unique(self.mask)]

    def __repr__(self) -> str:
        return f"Segmentation(mask={self.mask.shape} uint8, present={self.classes_present})"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    versions: tuple[str, ...]
    task: str
    ready: bool
    image_size: tuple[int, int, int]
    """(height, width, channels) the model takes; zeros for tensor-only models."""
    labels: tuple[str, ...] = ()
    inputs: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)
    """Tensor inputs: name -> (datatype, shape with -1 for variable dims); from model_info()."""
    outputs: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)
