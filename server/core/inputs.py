"""Reading a request's inputs: each checked against the model's config (name, datatype, shape,
batch size) and the server's limits (elements, BYTES lengths, estimated activations), then
decoded to arrays; and the outputs it asks for."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..models.model import ModelVersion, TensorSpec
from ..protocol import codecs
from ..protocol.errors import InvalidInput, LimitExceeded
from ..protocol.types import InferRequest, RequestedOutput
from ..settings import MIB, ServerSettings
from .shared_memory import OFF, SharedMemory, SharedMemoryOff


def shared(shared_memory: SharedMemory | None) -> SharedMemory:
    if shared_memory is None:
        raise SharedMemoryOff(OFF)
    return shared_memory


def _describe(shape: tuple[int, ...] | list[int]) -> str:
    return str(list(shape))


def _check_shape(model: ModelVersion, spec: TensorSpec, shape: tuple[int, ...]) -> int:
    """Checks one input's shape against the config; returns its batch size (1 if no batching)."""
    batching = model.max_batch_size > 0
    if batching and spec.static:
        fits = shape[1:] == spec.dims and len(shape) > 0  # the common case, checked fast
    else:
        fits = len(shape) == len(spec.dims) + batching and all(
            e == -1 or e == s for e, s in zip(spec.dims, shape[batching:], strict=True)
        )
    if not fits:
        expected = ([-1] if batching else []) + list(spec.dims)
        raise InvalidInput(
            f"input '{spec.name}': expected shape {expected}, got {_describe(shape)} "
            f"(model '{model.name}', -1 is any size)"
        )
    if not batching:
        return 1
    batch = shape[0]
    if batch < 1 or batch > model.max_batch_size:
        raise InvalidInput(
            f"input '{spec.name}': batch size {batch} is outside 1..{model.max_batch_size} "
            f"(max_batch_size of model '{model.name}')"
        )
    return batch


def _to_runtime(spec: TensorSpec, array: np.ndarray) -> np.ndarray:
    """ONNX Runtime takes string tensors as Python str; the protocol carries bytes."""
    if spec.datatype != "BYTES":
        return array
    try:
        return np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(array)
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"input '{spec.name}': BYTES element is not UTF-8 text: {exc}") from exc


@dataclass(frozen=True)
class RequestLimits:
    max_elements: int
    """Tensor elements per request, over all inputs."""
    max_bytes_element: int
    """Length of one BYTES element."""
    max_response_bytes: int
    """What a response may carry: outputs known to be larger are refused before the work."""
    max_item_activation_bytes: int = 0
    """Estimated intermediate tensors of one item (a batch row); 0: no bound."""

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> RequestLimits:
        return cls(
            settings.max_request_elements,
            settings.max_bytes_element,
            settings.response_budget_bytes,
            settings.max_item_activation_mb * MIB,
        )


UNLIMITED = RequestLimits(1 << 62, 1 << 62, 1 << 62)


def _check_bytes_lengths(spec: TensorSpec, array: np.ndarray, limit: int) -> None:
    longest = max((len(item) for item in array.reshape(-1)), default=0)
    if longest > limit:
        raise LimitExceeded(
            f"input '{spec.name}': a BYTES element of {longest} bytes is longer than this "
            f"server's limit of {limit} bytes (max_bytes_element_kb)"
        )


def _check_finite(model: ModelVersion, spec: TensorSpec, array: np.ndarray) -> None:
    finite = np.isfinite(array)
    if finite.all():
        return
    where = np.unravel_index(int(np.argmin(finite)), array.shape)
    raise InvalidInput(
        f"input '{spec.name}': element {list(map(int, where))} is {array[where]}; model "
        f"'{model.name}' takes finite numbers only (its config's finite_inputs)"
    )


def _check_bounds(model: ModelVersion, spec: TensorSpec, array: np.ndarray) -> None:
    assert spec.bounds is not None
    low, high = spec.bounds
    outside = (array < low) | (array > high)
    if array.size == 0 or not outside.any():
        return
    where = np.unravel_index(int(np.argmax(outside)), array.shape)
    raise InvalidInput(
        f"input '{spec.name}': element {list(map(int, where))} is {array[where]}, outside "
        f"{low}..{high} (model '{model.name}', its config's input_bounds)"
    )


def decode_inputs(
    model: ModelVersion,
    request: InferRequest,
    limits: RequestLimits = UNLIMITED,
    shared_memory: SharedMemory | None = None,
) -> tuple[dict[str, np.ndarray], int]:
    """Validated input arrays by name, and the request's batch size."""
    feeds: dict[str, np.ndarray] = {}
    batch_sizes: dict[str, int] = {}
    elements = 0
    for tensor in request.inputs:
        spec = model.inputs.get(tensor.name)
        if spec is None:
            raise InvalidInput(
                f"unexpected input '{tensor.name}' for model '{model.name}'; its inputs are "
                f"{sorted(model.inputs)}"
            )
        if tensor.name in feeds:
            raise InvalidInput(f"input '{tensor.name}' appears more than once")
        if tensor.datatype != spec.datatype:
            raise InvalidInput(
                f"input '{tensor.name}': expected datatype {spec.datatype}, got "
                f"{tensor.datatype or '(none)'}"
            )
        batch_sizes[tensor.name] = _check_shape(model, spec, tuple(tensor.shape))
        elements += codecs.element_count(tensor.shape)
        if elements > limits.max_elements:
            raise LimitExceeded(
                f"input '{tensor.name}': the request's inputs hold {elements} or more elements, "
                f"above this server's limit of {limits.max_elements} (max_request_elements)"
            )
        if tensor.region is not None:
            tensor.raw = shared(shared_memory).read(
                f"input '{tensor.name}'",
                tensor.region.region,
                tensor.region.offset,
                tensor.region.byte_size,
            )
        array = codecs.decode_input(tensor)
        if spec.datatype == "BYTES":
            _check_bytes_lengths(spec, array, limits.max_bytes_element)
        elif spec.finite:
            _check_finite(model, spec, array)
        elif spec.bounds is not None:
            _check_bounds(model, spec, array)
        feeds[tensor.name] = _to_runtime(spec, array)
    missing = [n for n, s in model.inputs.items() if n not in feeds and not s.optional]
    if missing:
        raise InvalidInput(
            f"model '{model.name}' needs input(s) {missing}, which the request lacks"
        )
    if len(set(batch_sizes.values())) > 1:
        raise InvalidInput(f"inputs disagree on the batch size: {batch_sizes}")
    batch = next(iter(batch_sizes.values()), 1)
    _check_activations(model, elements, batch if model.max_batch_size > 0 else 1, limits)
    return feeds, batch


def _check_activations(
    model: ModelVersion, elements: int, items: int, limits: RequestLimits
) -> None:
    """Refuses, before it runs, a request one of whose items would need more memory for the
    model's intermediate tensors than the server allows (estimated from the graph)."""
    per_element = model.activation_bytes_per_element
    bound = limits.max_item_activation_bytes
    if not per_element or not bound or not items:
        return
    per_item = per_element * elements / items
    if per_item > bound:
        raise LimitExceeded(
            f"model '{model.name}' would need about {per_item / MIB:.0f} MiB for the "
            f"intermediate tensors of each of this request's {items} item(s) "
            f"({elements // items} input elements each), above this server's limit of "
            f"{bound // MIB} MiB (max_item_activation_mb); send smaller inputs"
        )


def requested_outputs(model: ModelVersion, request: InferRequest) -> list[RequestedOutput]:
    """The outputs in the order the response lists them."""
    if not request.outputs:
        return [RequestedOutput(name) for name in model.outputs]
    for output in request.outputs:
        if output.name not in model.outputs:
            raise InvalidInput(
                f"unknown output '{output.name}' requested from model '{model.name}'; its "
                f"outputs are {sorted(model.outputs)}"
            )
    return request.outputs
