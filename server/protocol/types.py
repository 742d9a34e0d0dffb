"""The data plane's own request and response types, the same for every transport: the gRPC
and HTTP adapters convert their wire messages to these and back, at the edge."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import InvalidInput

Parameter = bool | int | float | str


@dataclass(frozen=True, slots=True)
class RegionRef:
    """Where a tensor's bytes lie in a registered shared memory region."""

    region: str
    byte_size: int
    offset: int = 0


@dataclass(slots=True)
class InputTensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    raw: bytes | memoryview | None = None
    """Little-endian bytes (BYTES: each element as a 4-byte length and its bytes)."""
    values: Sequence | None = None
    """Typed values, flattened in row-major order (gRPC typed contents, JSON data)."""
    region: RegionRef | None = None
    """The bytes are in shared memory: the data plane reads them into `raw`."""


@dataclass(slots=True)
class RequestedOutput:
    name: str
    classification: int = 0
    """Top-k classes as 'score:index[:label]' strings instead of the tensor (0: the tensor)."""
    binary: bool = False
    """HTTP only: send this output in the binary part of the answer."""
    region: RegionRef | None = None
    """Write it into shared memory instead of the answer."""


@dataclass(slots=True)
class InferRequest:
    model: str
    version: str = ""
    id: str = ""
    inputs: list[InputTensor] = field(default_factory=list)
    outputs: list[RequestedOutput] = field(default_factory=list)
    """Empty: every output, in the model's order."""
    parameters: dict[str, Parameter] = field(default_factory=dict)


@dataclass(slots=True)
class OutputTensor:
    name: str
    datatype: str
    array: np.ndarray
    binary: bool = False
    region: RegionRef | None = None
    """Written into this shared memory: the answer carries its shape, not its bytes."""


@dataclass(slots=True)
class InferResponse:
    model: str
    version: str
    id: str
    outputs: list[OutputTensor]
    final: bool = True
    """False for a streamed token; a stream ends with a final response without outputs."""


@dataclass(slots=True)
class TensorMetadata:
    name: str
    datatype: str
    shape: list[int]
    """-1 for a variable dimension, the batch dimension included when the model batches."""


@dataclass(slots=True)
class ModelMetadata:
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


@dataclass(frozen=True, slots=True)
class ImageSource:
    """One image of a Vision call: encoded bytes (PNG, JPEG, ...) or raw uint8 pixels."""

    encoded: bytes | None = None
    pixels: bytes | None = None
    height: int = 0
    width: int = 0
    channels: int = 0


Pair = tuple[int, int]
"""A duration's (count, nanoseconds)."""

REQUEST_DURATIONS = (
    "success", "fail", "queue", "compute_input", "compute_infer", "compute_output", "cache_hit",
    "cache_miss",
)  # fmt: skip
BATCH_DURATIONS = ("compute_input", "compute_infer", "compute_output")


@dataclass(frozen=True)
class VersionStatistics:
    """One model version's statistics with the protocol's fields, for any transport to encode."""

    name: str
    version: str
    last_inference: int
    """Milliseconds since the epoch (0: never)."""
    inference_count: int
    execution_count: int
    requests: dict[str, Pair]
    """Per-request sums, keyed by REQUEST_DURATIONS."""
    batches: dict[int, dict[str, Pair]]
    """Per batch size, its executions' sums keyed by BATCH_DURATIONS."""


@dataclass(frozen=True)
class IndexEntry:
    """A row of the repository index: a model (and version, when one is served)."""

    name: str
    version: str
    state: str
    reason: str


@dataclass(frozen=True)
class ServerMetadata:
    name: str
    version: str
    extensions: tuple[str, ...]


def region_ref(tensor: str, parameters: dict[str, Parameter]) -> RegionRef | None:
    """A tensor's shared memory parameters (shared_memory_region, _byte_size, _offset), or
    None when it has none. `tensor` names it in errors ("input 'x'")."""
    region = parameters.get("shared_memory_region")
    if region is None:
        return None
    size = parameters.get("shared_memory_byte_size")
    offset = parameters.get("shared_memory_offset", 0)
    if not isinstance(region, str) or not region:
        raise InvalidInput(f"{tensor}: shared_memory_region must be a region's name")
    if type(size) is not int or size < 0:
        raise InvalidInput(f"{tensor}: shared_memory_byte_size must be a byte count >= 0")
    if type(offset) is not int or offset < 0:
        raise InvalidInput(f"{tensor}: shared_memory_offset must be a byte offset >= 0")
    return RegionRef(region, size, offset)
