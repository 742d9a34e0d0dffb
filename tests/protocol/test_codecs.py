"""Unit tests of the protobuf <-> numpy conversions and the repository's version policy."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.utils import serialize_byte_tensor

from deepserve.server.grpc import convert as grpc_convert
from deepserve.server.models import repository
from deepserve.server.protocol import codecs
from deepserve.server.protocol.errors import InvalidInput, ModelLoadError
from deepserve.server.protocol.types import InferResponse, InputTensor, OutputTensor


def test_bytes_serialization_matches_tritonclient() -> None:
    array = np.array([b"", b"abc", "ünï".encode()], dtype=object)
    ours = codecs.serialize_bytes(array)
    assert ours == serialize_byte_tensor(array).item()
    back = codecs.deserialize_bytes(ours, 3, "t")
    assert back.tolist() == array.tolist()


@pytest.mark.parametrize(
    "datatype",
    [
        "BOOL",
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "FP16",
        "FP32",
        "FP64",
    ],
)
def test_raw_round_trip_every_fixed_size_type(datatype: str) -> None:
    dtype = codecs.numpy_dtype(datatype)
    array = (np.arange(6) % 2 == 0) if datatype == "BOOL" else np.arange(6).astype(dtype)
    array = array.reshape(2, 3)
    message = grpc_convert.infer_response(
        InferResponse("m", "1", "", [OutputTensor("t", codecs.datatype_of(array), array)])
    )
    tensor, raw = message.outputs[0], message.raw_output_contents[0]
    assert tensor.datatype == datatype and list(tensor.shape) == [2, 3]
    decoded = codecs.decode_input(InputTensor("t", datatype, (2, 3), raw=raw))
    assert decoded.dtype == array.dtype and decoded.tobytes() == array.tobytes()


def test_raw_decode_does_not_copy() -> None:
    raw = np.arange(4, dtype=np.float32).tobytes()
    decoded = codecs.decode_input(InputTensor("t", "FP32", (4,), raw=raw))
    assert not decoded.flags.owndata and not decoded.flags.writeable


def test_fp16_needs_raw_contents() -> None:
    message = pb.ModelInferRequest(model_name="m")
    message.inputs.add(name="half", datatype="FP16", shape=[1])
    with pytest.raises(InvalidInput, match=r"half.*raw_input_contents"):
        grpc_convert.infer_request(message)


def test_negative_dimension_is_invalid() -> None:
    with pytest.raises(InvalidInput, match="negative"):
        codecs.decode_input(InputTensor("t", "FP32", (-1, 2), raw=b""))


@pytest.mark.parametrize(
    ("datatype", "values", "message"),
    [
        ("UINT8", [1, 256], "value 256 is outside the range of uint8"),
        ("INT8", [-129], "value -129 is outside the range of int8"),
        ("INT32", [1.5], "int32 values must be integers"),
        ("INT64", [True], "int64 values must be integers"),
        ("BOOL", [1], "BOOL values must be true or false"),
        ("FP32", ["x"], "values are not FP32 numbers"),
    ],
)
def test_values_are_checked_against_the_datatype(datatype, values, message) -> None:
    with pytest.raises(InvalidInput, match=message):
        codecs.decode_input(InputTensor("t", datatype, (len(values),), values=values))


def _config(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("", [5]),
        ("version_policy { latest { num_versions: 2 } }", [3, 5]),
        ("version_policy { all {} }", [1, 3, 5]),
        ("version_policy { specific { versions: [3, 1] } }", [1, 3]),
    ],
)
def test_version_policy(policy: str, expected: list[int]) -> None:
    assert repository.select_versions(_config(policy), [1, 3, 5]) == expected


def test_specific_version_that_is_missing_fails() -> None:
    with pytest.raises(ModelLoadError, match=r"\[4\]"):
        repository.select_versions(_config("version_policy { specific { versions: [4] } }"), [1])


def test_config_datatype_names() -> None:
    assert codecs.datatype_from_config(mc.TYPE_STRING) == "BYTES"
    assert codecs.config_type_from_datatype("BYTES") == mc.TYPE_STRING
    assert codecs.datatype_from_config(mc.TYPE_FP16) == "FP16"


@pytest.mark.parametrize("value", [None, 5, 10**9, 1.5, [1], {"a": 1}])
def test_bytes_values_must_be_text_naming_the_input_and_type(value) -> None:
    """JSON data of a BYTES input: null or a number is the caller's error (bytes(10**9) would
    allocate a gigabyte of zeros)."""
    tensor = InputTensor("word", "BYTES", (2,), None, ["ok", value])
    with pytest.raises(
        InvalidInput,
        match=f"input 'word': BYTES values must be strings, got {type(value).__name__}",
    ):
        codecs.decode_input(tensor)
    assert codecs.decode_input(InputTensor("word", "BYTES", (2,), None, ["ok", b"x"])).tolist() == [
        b"ok",
        b"x",
    ]
