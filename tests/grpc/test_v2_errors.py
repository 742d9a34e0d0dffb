"""Every bad request gets the right status code and a message naming what was wrong, and the
server keeps serving."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2 as pb


def _raw_request(model: str, *tensors: tuple[str, str, list[int], bytes]) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model)
    for name, datatype, shape, data in tensors:
        request.inputs.add(name=name, datatype=datatype, shape=shape)
        request.raw_input_contents.append(data)
    return request


def _add_sub(
    batch: int = 1, width: int = 16, datatype: str = "FP32", name0: str = "INPUT0"
) -> pb.ModelInferRequest:
    data = np.zeros((batch, width), np.float32).tobytes()
    return _raw_request(
        "add_sub",
        (name0, datatype, [batch, width], data),
        ("INPUT1", "FP32", [batch, width], data),
    )


def _status(stub, request: pb.ModelInferRequest) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request)
    return caught.value.code(), caught.value.details()


CASES = {
    "unknown model": (
        _raw_request("no_such_model", ("x", "FP32", [1], b"\0" * 4)),
        grpc.StatusCode.NOT_FOUND,
        ["no_such_model"],
    ),
    "unknown version": (
        pb.ModelInferRequest(model_name="versioned", model_version="2"),
        grpc.StatusCode.NOT_FOUND,
        ["version 2", "[1, 3]"],
    ),
    "wrong input name": (
        _add_sub(name0="INPUT9"),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["INPUT9", "INPUT0"],
    ),
    "wrong dtype": (
        _add_sub(datatype="INT32"),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["INPUT0", "expected datatype FP32, got INT32"],
    ),
    "wrong shape": (
        _add_sub(width=15),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["INPUT0", "expected shape [-1, 16], got [1, 15]"],
    ),
    "batch too large": (
        _add_sub(batch=9),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["INPUT0", "batch size 9", "max_batch_size"],
    ),
    "raw length mismatch": (
        _raw_request(
            "add_sub",
            ("INPUT0", "FP32", [1, 16], b"\0" * 60),
            ("INPUT1", "FP32", [1, 16], b"\0" * 64),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["INPUT0", "60 bytes, expected 64"],
    ),
    "missing input": (
        _raw_request("add_sub", ("INPUT0", "FP32", [1, 16], b"\0" * 64)),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["INPUT1"],
    ),
    "unknown output": (
        pb.ModelInferRequest(
            model_name="negate",
            inputs=[
                pb.ModelInferRequest.InferInputTensor(name="x", datatype="INT32", shape=[1, 3])
            ],
            raw_input_contents=[b"\0" * 12],
            outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="z")],
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["'z'", "['y']"],
    ),
    "broken BYTES prefix": (
        _raw_request("strings", ("text", "BYTES", [2], b"\x05\0\0\0hello\x09\0")),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["text", "length prefix"],
    ),
    "BYTES count mismatch": (
        _raw_request("strings", ("text", "BYTES", [3], b"\x01\0\0\0a")),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["text", "expected 3 BYTES elements", "got 1"],
    ),
    "typed contents count mismatch": (
        pb.ModelInferRequest(
            model_name="negate",
            inputs=[
                pb.ModelInferRequest.InferInputTensor(
                    name="x",
                    datatype="INT32",
                    shape=[1, 3],
                    contents=pb.InferTensorContents(int_contents=[1, 2]),
                )
            ],
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["'x'", "2 values, expected 3"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_request_status_and_message(stub, case: str) -> None:
    request, expected_code, fragments = CASES[case]
    code, message = _status(stub, request)
    assert code == expected_code, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_server_keeps_serving_after_bad_requests(stub, client) -> None:
    for request, _, _ in CASES.values():
        with pytest.raises(grpc.RpcError):
            stub.ModelInfer(request)
    garbage = pb.ModelInferRequest(model_name="add_sub")
    garbage.inputs.add(name="INPUT0", datatype="FP99", shape=[1, 16])
    with pytest.raises(grpc.RpcError):
        stub.ModelInfer(garbage)
    x = np.ones((1, 3), np.int32)
    tensor = triton.InferInput("x", [1, 3], "INT32")
    tensor.set_data_from_numpy(x)
    np.testing.assert_array_equal(client.infer("negate", [tensor]).as_numpy("y"), -x)
    assert client.is_server_live() and client.is_server_ready()


def test_tritonclient_sees_the_status(client) -> None:
    tensor = triton.InferInput("x", [1, 3], "INT32")
    tensor.set_data_from_numpy(np.ones((1, 3), np.int32))
    with pytest.raises(triton.InferenceServerException) as caught:
        client.infer("missing_model", [tensor])
    assert caught.value.status() == "StatusCode.NOT_FOUND"


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.CudaSharedMemoryStatus(pb.CudaSharedMemoryStatusRequest()),
        lambda s: s.CudaSharedMemoryRegister(pb.CudaSharedMemoryRegisterRequest(name="r")),
        lambda s: s.TraceSetting(pb.TraceSettingRequest()),
        lambda s: s.LogSettings(pb.LogSettingsRequest()),
    ],
)
def test_unimplemented_extensions_say_so(stub, call) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        call(stub)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "deepserve does not implement" in caught.value.details()


def test_metadata_of_unknown_model_is_not_found(client) -> None:
    with pytest.raises(triton.InferenceServerException) as caught:
        client.get_model_metadata("nope")
    assert caught.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(triton.InferenceServerException) as caught:
        client.get_model_config("versioned", "7")
    assert caught.value.status() == "StatusCode.NOT_FOUND"
