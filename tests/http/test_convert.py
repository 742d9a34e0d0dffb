"""The REST edge's converters in process: JSON and Triton's binary-data extension in, the
core's request out; the core's response out as JSON or JSON + binary, as tritonclient.http
reads them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.http as triton_http

from deepserve.server.http import convert
from deepserve.server.protocol import codecs
from deepserve.server.protocol.errors import InvalidInput
from deepserve.server.protocol.types import InferResponse, OutputTensor


def _tritonclient_body(binary: bool) -> tuple[bytes, int | None]:
    """The body tritonclient.http sends for two inputs, one of them binary."""
    ints = triton_http.InferInput("a", [2, 2], "INT32")
    ints.set_data_from_numpy(np.array([[1, 2], [3, 4]], np.int32), binary_data=binary)
    words = triton_http.InferInput("b", [1], "BYTES")
    words.set_data_from_numpy(np.array([b"hi"], object), binary_data=False)
    wanted = triton_http.InferRequestedOutput("y", binary_data=True)
    body, length = triton_http.InferenceServerClient.generate_request_body(
        [ints, words], outputs=[wanted], request_id="7"
    )
    return body, length


@pytest.mark.parametrize("binary", [False, True])
def test_requests_from_tritonclient_http(binary: bool) -> None:
    body, length = _tritonclient_body(binary)
    request, all_binary = convert.infer_request(
        body, None if length is None else str(length), "m", "2"
    )
    assert (request.model, request.version, request.id, all_binary) == ("m", "2", "7", False)
    a, b = request.inputs
    assert codecs.decode_input(a).tolist() == [[1, 2], [3, 4]]
    assert (a.raw is not None) == binary
    assert codecs.decode_input(b).tolist() == [b"hi"]
    assert [(o.name, o.binary) for o in request.outputs] == [("y", True)]


@pytest.mark.parametrize(
    ("body", "length", "message"),
    [
        (b"[1, 2]", None, "the request must be a JSON object"),
        (b"{not json", None, "the request is not JSON"),
        (b'{"inputs": [{"name": "a", "shape": "2"}]}', None, "shape must be a list of integers"),
        (b'{"inputs": [{"name": "a", "shape": [1]}]}', None, "no 'data' and no binary_data_size"),
        (b"{}", "x", "Inference-Header-Content-Length must be an integer"),
        (b"{}", "99", "outside the body's 2 bytes"),
    ],
)
def test_bad_bodies_name_what_is_wrong(body: bytes, length: str | None, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        convert.infer_request(body, length, "m", "")


def test_responses_as_json_and_as_binary_parts() -> None:
    response = InferResponse("m", "1", "7", [
        OutputTensor("y", "FP32", np.array([[0.5, 1.5]], np.float32)),
        OutputTensor("z", "INT64", np.array([3], np.int64), binary=True),
    ])  # fmt: skip
    body, length = convert.infer_response(response)
    head = json.loads(body[:length])
    assert head["id"] == "7" and head["outputs"][0]["data"] == [0.5, 1.5]
    assert head["outputs"][1]["parameters"]["binary_data_size"] == 8
    assert np.frombuffer(body[length:], np.int64).tolist() == [3]
    parsed = triton_http.InferResult.from_response_body(body, header_length=length)
    assert parsed.as_numpy("z").tolist() == [3]
    plain, none = convert.infer_response(
        InferResponse("m", "1", "", [OutputTensor("y", "FP32", np.zeros(2, np.float32))])
    )
    assert none is None and json.loads(plain)["outputs"][0]["shape"] == [2]
