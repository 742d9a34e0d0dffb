"""KServe v2 REST bodies <-> the data plane's types: JSON tensors, and Triton's binary-data
extension (a JSON header of `Inference-Header-Content-Length` bytes, then the tensors' raw
bytes in order, each input's length in its `binary_data_size` parameter)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..protocol import codecs
from ..protocol.errors import InvalidInput
from ..protocol.numbers import decimal
from ..protocol.types import (
    IndexEntry,
    InferRequest,
    InferResponse,
    InputTensor,
    ModelMetadata,
    Pair,
    RequestedOutput,
    VersionStatistics,
    region_ref,
)
from .calls import MAX_JSON_BYTES, parse_json

HEADER_LENGTH = "inference-header-content-length"


def flatten(data: Any) -> list:
    """JSON tensor data may be nested row by row; the protocol's order is row-major."""
    if not isinstance(data, list):
        return [data]
    if not data or not isinstance(data[0], list):
        return data
    flat: list = []
    stack = [iter(data)]
    while stack:
        item = next(stack[-1], StopIteration)
        if item is StopIteration:
            stack.pop()
        elif isinstance(item, list):
            stack.append(iter(item))
        else:
            flat.append(item)
    return flat


def _object(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    return value


def _list(value: Any, what: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInput(f"{what} must be a JSON list, got {type(value).__name__}")
    return value


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{what}: 'name' must be a string, got {type(value).__name__}")
    return value


def infer_request(
    body: bytes,
    header_length: str | None,
    model: str,
    version: str,
    max_json_bytes: int = MAX_JSON_BYTES,
) -> tuple[InferRequest, bool]:
    """An infer body, JSON or JSON header + binary tensors; and whether every output should
    go back binary (`binary_data_output`)."""
    binary = memoryview(b"")
    if header_length is not None:
        length = decimal(header_length)
        if length is None:
            raise InvalidInput("Inference-Header-Content-Length must be an integer")
        if not 0 < length <= len(body):
            raise InvalidInput(
                f"Inference-Header-Content-Length {length} is outside the body's {len(body)} bytes"
            )
        head, binary = body[:length], memoryview(body)[length:]
    else:
        head = body
    document = _object(parse_json(bytes(head), "the request", max_json_bytes), "the request")
    inputs, offset = [], 0
    for position, spec in enumerate(_list(document.get("inputs"), "inputs")):
        spec = _object(spec, f"inputs[{position}]")
        name = _name(spec.get("name", ""), f"inputs[{position}]")
        shape = spec.get("shape", [])
        if not isinstance(shape, list) or not all(type(d) is int for d in shape):
            raise InvalidInput(f"input '{name}': shape must be a list of integers")
        parameters = _object(spec.get("parameters") or {}, f"input '{name}' parameters")
        size = parameters.get("binary_data_size")
        region = region_ref(f"input '{name}'", parameters)
        if region is not None:
            raw, values = None, None  # the data plane reads it from the region
        elif size is not None:
            if type(size) is not int or size < 0 or offset + size > len(binary):
                raise InvalidInput(
                    f"input '{name}': binary_data_size {size} does not fit the "
                    f"{len(binary) - offset} binary bytes left"
                )
            raw, values = binary[offset : offset + size], None
            offset += size
        else:
            if "data" not in spec:
                raise InvalidInput(f"input '{name}': no 'data' and no binary_data_size")
            raw, values = None, flatten(spec["data"])
        datatype = str(spec.get("datatype", ""))
        inputs.append(InputTensor(name, datatype, tuple(shape), raw, values, region))
    if offset != len(binary):
        raise InvalidInput(
            f"the binary part holds {len(binary)} bytes but the inputs claim {offset}"
        )
    request_parameters = _object(document.get("parameters") or {}, "parameters")
    all_binary = bool(request_parameters.pop("binary_data_output", False))
    outputs = []
    for position, spec in enumerate(_list(document.get("outputs"), "outputs")):
        spec = _object(spec, f"outputs[{position}]")
        parameters = _object(spec.get("parameters") or {}, "output parameters")
        k = parameters.get("classification", 0)
        if type(k) is not int or k < 0:
            raise InvalidInput(
                f"output '{spec.get('name')}': classification must be a positive class count"
            )
        binary_output = bool(parameters.get("binary_data", all_binary))
        name = _name(spec.get("name", ""), f"outputs[{position}]")
        region = region_ref(f"output '{name}'", parameters)
        outputs.append(RequestedOutput(name, k, binary_output, region))
    request = InferRequest(
        model=model,
        version=version,
        id=str(document.get("id", "")),
        inputs=inputs,
        outputs=outputs,
        parameters=request_parameters,
    )
    return request, all_binary


def _json_data(array: np.ndarray, datatype: str) -> list:
    flat = array.reshape(-1)
    if datatype == "BYTES":
        return [
            item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
            for item in flat
        ]
    if datatype == "FP16":
        return flat.astype(np.float32).tolist()
    return flat.tolist()


def infer_response(response: InferResponse, all_binary: bool = False) -> tuple[bytes, int | None]:
    """The body, and the JSON header's length when binary outputs follow it."""
    outputs, parts = [], []
    for output in response.outputs:
        entry: dict[str, Any] = {
            "name": output.name,
            "datatype": output.datatype,
            "shape": list(output.array.shape),
        }
        if output.region is not None:  # written there: the answer says where
            entry["parameters"] = {
                "shared_memory_region": output.region.region,
                "shared_memory_byte_size": output.region.byte_size,
            }
            if output.region.offset:
                entry["parameters"]["shared_memory_offset"] = output.region.offset
        elif output.binary or all_binary:
            data = codecs.tensor_bytes(output.array, output.datatype)
            entry["parameters"] = {"binary_data_size": len(data)}
            parts.append(data)
        else:
            entry["data"] = _json_data(output.array, output.datatype)
        outputs.append(entry)
    document = {
        "model_name": response.model,
        "model_version": response.version,
        "outputs": outputs,
    }
    if response.id:
        document["id"] = response.id
    head = json.dumps(document, separators=(",", ":")).encode()
    if not parts:
        return head, None
    return b"".join([head, *parts]), len(head)


def metadata(model: ModelMetadata) -> dict:
    def describe(tensors: list) -> list[dict]:
        return [{"name": t.name, "datatype": t.datatype, "shape": t.shape} for t in tensors]

    return {
        "name": model.name,
        "versions": model.versions,
        "platform": model.platform,
        "inputs": describe(model.inputs),
        "outputs": describe(model.outputs),
    }


def _uint(document: dict, key: str, value: int) -> None:
    """The protocol's JSON form (protobuf's): 64-bit integers as strings, zeros left out."""
    if value:
        document[key] = str(value)


def _duration(pair: Pair) -> dict:
    document: dict[str, str] = {}
    _uint(document, "count", pair[0])
    _uint(document, "ns", pair[1])
    return document


def statistics(view: VersionStatistics) -> dict:
    document: dict[str, Any] = {}
    if view.name:
        document["name"] = view.name
    if view.version:
        document["version"] = view.version
    _uint(document, "last_inference", view.last_inference)
    _uint(document, "inference_count", view.inference_count)
    _uint(document, "execution_count", view.execution_count)
    document["inference_stats"] = {key: _duration(p) for key, p in view.requests.items()}
    batches = []
    for size, durations in view.batches.items():
        batch: dict[str, Any] = {}
        _uint(batch, "batch_size", size)
        batches.append(batch | {key: _duration(p) for key, p in durations.items()})
    if batches:
        document["batch_stats"] = batches
    return document


def index_entry(row: IndexEntry) -> dict:
    return {"name": row.name, "version": row.version, "state": row.state, "reason": row.reason}
