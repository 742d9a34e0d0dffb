"""Random malformed requests: each gets an error status, none crashes the server."""

from __future__ import annotations

import grpc
import numpy as np
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2 as pb

DATATYPES = ["BOOL", "UINT8", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES", "BF16", "", "X"]
MODELS = ["add_sub", "classifier", "negate", "strings", "versioned", "", "missing"]
NAMES = ["INPUT0", "INPUT1", "image", "x", "text", "", "\x00"]


def _random_request(rng: np.random.Generator) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=str(rng.choice(MODELS)))
    if rng.random() < 0.2:
        request.model_version = str(rng.choice(["0", "1", "2", "-1", "abc", "99999999999999"]))
    raw = rng.random() < 0.7
    for _ in range(int(rng.integers(0, 4))):
        rank = int(rng.integers(0, 4))
        shape = [int(rng.choice([0, 1, 2, 3, 8, 16, 2**31, 2**62])) for _ in range(rank)]
        tensor = request.inputs.add(
            name=str(rng.choice(NAMES)), datatype=str(rng.choice(DATATYPES)), shape=shape
        )
        if raw:
            request.raw_input_contents.append(rng.bytes(int(rng.integers(0, 200))))
        else:
            tensor.contents.fp32_contents.extend(rng.random(int(rng.integers(0, 20))).tolist())
            tensor.contents.bytes_contents.extend([b"a"] * int(rng.integers(0, 3)))
    if rng.random() < 0.3:
        output = request.outputs.add(name=str(rng.choice(["OUTPUT0", "logits", "y", "zz"])))
        output.parameters["classification"].int64_param = int(rng.integers(-2, 20))
    return request


def test_random_malformed_requests_never_crash_the_server(stub, client) -> None:
    rng = np.random.default_rng(2026)
    codes: set[grpc.StatusCode] = set()
    for _ in range(400):
        try:
            stub.ModelInfer(_random_request(rng), timeout=10)
        except grpc.RpcError as error:
            assert error.code() != grpc.StatusCode.UNKNOWN, error.details()
            codes.add(error.code())
    assert grpc.StatusCode.INVALID_ARGUMENT in codes and grpc.StatusCode.NOT_FOUND in codes
    assert grpc.StatusCode.INTERNAL not in codes
    assert client.is_server_live() and client.is_server_ready()
    tensor = triton.InferInput("x", [1, 3], "INT32")
    tensor.set_data_from_numpy(np.ones((1, 3), np.int32))
    np.testing.assert_array_equal(client.infer("negate", [tensor]).as_numpy("y"), -np.ones((1, 3)))
