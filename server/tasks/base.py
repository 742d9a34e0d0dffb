"""A task: what a model's config parameters say it does (parsed once, when the model loads),
its pre-processing (decode and resize images to the model's input), its post-processing
(model outputs -> labels, boxes, masks), and how both transports speak it: its request options
from a gRPC message or an HTTP query, its answer as a message or JSON, its route and RPC names.
The Vision servicer, the HTTP routes and the OpenAPI document are made from the task table, so
adding a task is one file here plus its messages in vision.proto (and an SDK wrapper)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..protocol.errors import InvalidInput, TaskNotSupported

RESIZE_MODES = ("stretch",)


@dataclass(frozen=True)
class ImageInput:
    """The model input that images become: its name and the size and channels it takes."""

    name: str
    height: int
    width: int
    channels: int


@dataclass(frozen=True)
class QueryParameter:
    """An option of the task's HTTP route, given as a query parameter (the same option is a
    field of its gRPC request message)."""

    name: str
    kind: type
    """int, float or str."""
    description: str
    choices: tuple[str, ...] = ()


def parse_query(query: Mapping[str, str], parameters: Sequence[QueryParameter]) -> dict[str, Any]:
    """Each declared parameter's value (None where absent or empty), checked: numbers must
    parse and not be negative, strings must be one of their choices."""
    values: dict[str, Any] = {}
    for parameter in parameters:
        text = query.get(parameter.name)
        if text is None or text == "":
            values[parameter.name] = None
            continue
        if parameter.choices:
            if text not in parameter.choices:
                raise InvalidInput(
                    f"query parameter '{parameter.name}' must be one of {parameter.choices}"
                )
            values[parameter.name] = text
            continue
        try:
            value = parameter.kind(text)
        except ValueError:
            raise InvalidInput(
                f"query parameter '{parameter.name}' must be a {parameter.kind.__name__}, "
                f"got '{text}'"
            ) from None
        if value < 0:
            raise InvalidInput(f"query parameter '{parameter.name}' must not be negative")
        values[parameter.name] = value
    return values


class Task:
    name: ClassVar[str]
    """The config parameter `task` that selects this class."""
    verb: ClassVar[str]
    """Its HTTP route, /v1/models/{model}/{verb}."""
    rpc: ClassVar[str]
    """Its method of deepserve.v1.Vision."""
    query: ClassVar[tuple[QueryParameter, ...]] = ()
    """Its options over HTTP."""
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

    # ---- the task on the wire: options in, answers out (the same for every model) -------------

    @classmethod
    def options_from_query(cls, values: dict[str, Any], response_budget: int) -> Any:
        """The options from the route's parsed query parameters."""
        raise NotImplementedError

    @classmethod
    def options_from_message(cls, request: Any, response_budget: int) -> Any:
        """The options from the task's gRPC request message."""
        raise NotImplementedError

    @classmethod
    def response_message(cls, model: str, version: str, results: list, options: Any) -> Any:
        """The task's gRPC response message."""
        raise NotImplementedError

    @classmethod
    def results_json(cls, results: list, options: Any) -> list[dict[str, Any]]:
        """One JSON object per image, for the HTTP answer's `results`."""
        raise NotImplementedError
