"""Conversions between Open Inference Protocol tensors (protobuf) and numpy arrays.

Everything that knows both the wire format and numpy lives here, so the transports and the
data plane deal in arrays only.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from .errors import InvalidInput
from .types import InputTensor

# Protocol datatype -> numpy dtype (little-endian, as the protocol's raw bytes are).
_NUMPY_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}

# Which InferTensorContents field carries each datatype when typed contents are used.
_CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

# ONNX Runtime type string -> protocol datatype.
_ORT_TO_DATATYPE: dict[str, str] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}

_LENGTH_PREFIX = struct.Struct("<I")


def datatype_from_config(data_type: int) -> str:
    """`TYPE_FP32` (ModelConfig enum) -> `"FP32"`; TYPE_STRING is the protocol's BYTES."""
    name = mc.DataType.Name(data_type).removeprefix("TYPE_")
    return "BYTES" if name == "STRING" else name


def config_type_from_datatype(datatype: str) -> int:
    """`"FP32"` -> `TYPE_FP32`; the inverse of :func:`datatype_from_config`."""
    return mc.DataType.Value("TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}")


def datatype_from_ort(ort_type: str) -> str | None:
    """ONNX Runtime's `tensor(float)` -> `"FP32"`; None for types the protocol cannot carry."""
    return _ORT_TO_DATATYPE.get(ort_type)


def numpy_dtype(datatype: str) -> np.dtype:
    return _NUMPY_DTYPES[datatype]


_DATATYPE_OF: dict[np.dtype, str] = {
    dtype: name for name, dtype in _NUMPY_DTYPES.items() if name != "BYTES"
}


def datatype_of(array: np.ndarray) -> str:
    """The protocol datatype of a numpy array (object / str arrays are BYTES)."""
    if array.dtype.kind in "OUS":
        return "BYTES"
    name = _DATATYPE_OF.get(array.dtype.newbyteorder("<"))
    if name is None:
        raise InvalidInput(f"numpy dtype {array.dtype} has no Open Inference Protocol datatype")
    return name


def element_count(shape: Sequence[int]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def tensor_bytes(array: np.ndarray, datatype: str) -> bytes:
    """An output's raw form, as every transport and shared memory carry it."""
    if datatype == "BYTES":
        return serialize_bytes(array)
    return np.ascontiguousarray(array, dtype=numpy_dtype(datatype)).tobytes()


def serialize_bytes(array: np.ndarray) -> bytes:
    """BYTES tensor -> the protocol's raw form: each element as <uint32 LE length><bytes>."""
    parts: list[bytes] = []
    for item in array.reshape(-1):
        data = item.encode("utf-8") if isinstance(item, str) else bytes(item)
        parts.append(_LENGTH_PREFIX.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def deserialize_bytes(buffer: bytes | memoryview, count: int, tensor_name: str) -> np.ndarray:
    """The inverse of :func:`serialize_bytes`; checks the buffer holds exactly `count` items."""
    items: list[bytes] = []
    offset = 0
    view = memoryview(buffer)
    while offset < len(view):
        if offset + 4 > len(view):
            raise InvalidInput(
                f"input '{tensor_name}': BYTES data ends inside a 4-byte length prefix "
                f"at offset {offset}"
            )
        (length,) = _LENGTH_PREFIX.unpack_from(view, offset)
        offset += 4
        if offset + length > len(view):
            raise InvalidInput(
                f"input '{tensor_name}': BYTES element {len(items)} declares {length} bytes "
                f"but only {len(view) - offset} remain"
            )
        items.append(bytes(view[offset : offset + length]))
        offset += length
    if len(items) != count:
        raise InvalidInput(
            f"input '{tensor_name}': expected {count} BYTES elements for its shape, "
            f"got {len(items)}"
        )
    result = np.empty(count, dtype=object)
    result[:] = items
    return result


def decode_input(tensor: InputTensor) -> np.ndarray:
    """One request input -> numpy array, from its raw bytes when given, else from its values.

    Fixed-size raw data is wrapped without a copy (`np.frombuffer`); the result is read-only.
    """
    name = tensor.name
    datatype = tensor.datatype
    if datatype not in _NUMPY_DTYPES:
        raise InvalidInput(f"input '{name}': unsupported datatype '{datatype}'")
    shape = tuple(tensor.shape)
    if any(dim < 0 for dim in shape):
        raise InvalidInput(f"input '{name}': shape {list(shape)} has a negative dimension")
    count = element_count(shape)
    dtype = _NUMPY_DTYPES[datatype]

    if tensor.raw is not None:
        raw = tensor.raw
        if datatype == "BYTES":
            return deserialize_bytes(raw, count, name).reshape(shape)
        expected = count * dtype.itemsize
        if len(raw) != expected:
            raise InvalidInput(
                f"input '{name}': raw data holds {len(raw)} bytes, expected {expected} "
                f"for shape {list(shape)} of {datatype}"
            )
        return np.frombuffer(raw, dtype=dtype).reshape(shape)

    values = tensor.values if tensor.values is not None else ()
    if len(values) != count:
        raise InvalidInput(
            f"input '{name}': holds {len(values)} values, expected {count} for shape {list(shape)}"
        )
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        for i, value in enumerate(values):
            if isinstance(value, str):
                array[i] = value.encode()
            elif isinstance(value, bytes):
                array[i] = value
            else:  # bytes(n) of a number would make n zero bytes, and of null fails
                raise InvalidInput(
                    f"input '{name}': BYTES values must be strings, got {type(value).__name__}"
                )
        return array.reshape(shape)
    if dtype.kind in "iu":
        return _integers(values, dtype, name).reshape(shape)
    if dtype.kind == "b":
        if not all(isinstance(v, bool) for v in values):
            raise InvalidInput(f"input '{name}': BOOL values must be true or false")
        return np.asarray(values, dtype=dtype).reshape(shape)
    try:
        return np.asarray(values, dtype=dtype).reshape(shape)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"input '{name}': values are not {datatype} numbers ({exc})") from None


def _integers(values: Sequence, dtype: np.dtype, name: str) -> np.ndarray:
    """Integer values, checked to be integers that fit the datatype before converting."""
    if not all(type(v) is int for v in values):
        raise InvalidInput(f"input '{name}': {dtype.name} values must be integers")
    try:
        wide = np.asarray(values, dtype=np.int64 if dtype.kind == "i" else np.uint64)
    except OverflowError:
        raise InvalidInput(
            f"input '{name}': a value is outside the range of {dtype.name}"
        ) from None
    info = np.iinfo(dtype)
    if wide.size and (wide.min() < info.min or wide.max() > info.max):
        bad = wide[(wide < info.min) | (wide > info.max)][0]
        raise InvalidInput(
            f"input '{name}': value {bad} is outside the range of {dtype.name} "
            f"({info.min}..{info.max})"
        )
    return wide.astype(dtype)


def contents_field(datatype: str) -> str | None:
    """The gRPC InferTensorContents field that carries `datatype`, if any."""
    return _CONTENTS_FIELD.get(datatype)
