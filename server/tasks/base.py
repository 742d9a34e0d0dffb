"""A task: what a model's config parameters say it does (parsed once, when the model loads),
its pre-processing (decode and resize images to the model's input) and its post-processing
(model outputs -> labels, boxes, masks). Adding a task is one file here plus its messages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..protocol.errors import TaskNotSupported

RESIZE_MODES = ("stretch",)


@dataclass(frozen=True)
class ImageInput:
    """The model input that images become: its name and the size and channels it takes."""

    name: str
    height: int
    width: int
    channels: int


class Task:
    name: ClassVar[str]
    """The config parameter `task` that selects this class."""
    outputs: ClassVar[tuple[str, ...]] = ()
    """Outputs the task reads; empty: the model's first output."""

    def __init__(
        self,
        model: str,
        image: ImageInput,
        parameters: Mapping[str, str],
        output_names: Sequence[str],
        labels: Mapping[str, list[str]],
    ) -> None:
        self.model = model
        self.image = image
        self.parameters = dict(parameters)
        missing = [o for o in self.outputs if o not in output_names]
        if missing:
            raise TaskNotSupported(f"{self.name} model '{model}' lacks outputs {missing}")
        self.output_names = list(self.outputs) or [output_names[0]]
        self.labels = labels.get(self.output_names[0], [])
        if self.outputs:
            self.labels = labels.get("classes", self.labels)

    def number(self, key: str, default: float) -> float:
        value = self.parameters.get(key)
        try:
            return float(value) if value not in (None, "") else default
        except ValueError:
            raise TaskNotSupported(
                f"model '{self.model}': parameter {key} is not a number: '{value}'"
            ) from None

    def check_sizes(self, sizes: list[tuple[int, int]], options: Any) -> None:
        """Sizes of the request's images from their headers, before any decoding: refuse now
        what could not be answered after the work. Nothing to refuse by default."""

    def finish(
        self, outputs: dict[str, np.ndarray], sizes: list[tuple[int, int]], options: Any
    ) -> list:
        raise NotImplementedError
