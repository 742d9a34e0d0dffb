"""Unit tests of the protobuf <-> numpy conversions and the repository's version policy."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.utils import serialize_byte_tensor

from deepserve.server import codecs, repository
from deepserve.server.errors import InvalidInput, ModelLoadError


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
    tensor, raw = codecs.encode_output("t", array)
    assert tensor.datatype == datatype and list(tensor.shape) == [2, 3]
    request = pb.ModelInferRequest.InferInputTensor(name="t", datatype=datatype, shape=[2, 3])
    decoded = codecs.decode_input(request, raw)
    assert decoded.dtype == array.dtype and decoded.tobytes() == array.tobytes()


def test_raw_decode_does_not_copy() -> None:
    raw = np.arange(4, dtype=np.float32).tobytes()
    tensor = pb.ModelInferRequest.InferInputTensor(name="t", datatype="FP32", shape=[4])
    decoded = codecs.decode_input(tensor, raw)
    assert not decoded.flags.owndata and not decoded.flags.writeable


def test_fp16_needs_raw_contents() -> None:
    tensor = pb.ModelInferRequest.InferInputTensor(name="half", datatype="FP16", shape=[1])
    with pytest.raises(InvalidInput, match=r"half.*raw_input_contents"):
        codecs.decode_input(tensor, None)


def test_negative_dimension_is_invalid() -> None:
    tensor = pb.ModelInferRequest.InferInputTensor(name="t", datatype="FP32", shape=[-1, 2])
    with pytest.raises(InvalidInput, match="negative"):
        codecs.decode_input(tensor, b"")


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
