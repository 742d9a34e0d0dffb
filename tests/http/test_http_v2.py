"""KServe v2 REST on its own port, with tritonclient.http unchanged: the same server answers
tritonclient.grpc and tritonclient.http alike, JSON and binary tensors, with the same errors,
limits and tokens."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from ..onnx_models import standard_repository
from ..server_process import RunningServer, free_port, run_server

ADMIN = "http-admin-token-0123456789"
INFERENCE = "http-inference-token-0123456789"


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, str]]:
    root = tmp_path_factory.mktemp("http")
    repo = standard_repository(root / "models")
    port = free_port()
    with run_server(repo, root, "--http-port", str(port), "--max-message-mb", "1") as server:
        yield server, f"127.0.0.1:{port}"


@pytest.fixture()
def http(both) -> Iterator[triton_http.InferenceServerClient]:
    client = triton_http.InferenceServerClient(both[1])
    yield client
    client.close()


def _add_sub_inputs(module, values: np.ndarray, binary: bool | None = None) -> list:
    tensors = []
    for name in ("INPUT0", "INPUT1"):
        tensor = module.InferInput(name, list(values.shape), "FP32")
        if binary is None:
            tensor.set_data_from_numpy(values)
        else:
            tensor.set_data_from_numpy(values, binary_data=binary)
        tensors.append(tensor)
    return tensors


def test_health_and_metadata_match_grpc(both, http) -> None:
    server, _ = both
    grpc_client = triton_grpc.InferenceServerClient(server.url)
    assert http.is_server_live() and http.is_server_ready()
    assert http.is_model_ready("negate") and not http.is_model_ready("no-such-model")
    metadata = http.get_server_metadata()
    assert metadata["name"] == "deepserve" and "binary_tensor_data" in metadata["extensions"]
    over_grpc = grpc_client.get_model_metadata("add_sub")
    assert http.get_model_metadata("add_sub") == {
        "name": over_grpc.name,
        "versions": list(over_grpc.versions),
        "platform": over_grpc.platform,
        "inputs": [
            {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
            for t in over_grpc.inputs
        ],
        "outputs": [
            {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
            for t in over_grpc.outputs
        ],
    }
    assert http.get_model_metadata("versioned", "3")["versions"] == ["1", "3"]
    config = http.get_model_config("classifier")
    assert config["max_batch_size"] == 8
    assert config["output"][0]["label_filename"] == "labels.txt"
    grpc_client.close()


@pytest.mark.parametrize("binary", [False, True])
def test_infer_json_and_binary_agree_with_grpc(both, http, binary: bool) -> None:
    server, _ = both
    values = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
    outputs = [
        triton_http.InferRequestedOutput("OUTPUT0", binary_data=binary),
        triton_http.InferRequestedOutput("OUTPUT1", binary_data=binary),
    ]
    result = http.infer("add_sub", _add_sub_inputs(triton_http, values, binary), outputs=outputs)
    grpc_client = triton_grpc.InferenceServerClient(server.url)
    expected = grpc_client.infer("add_sub", _add_sub_inputs(triton_grpc, values))
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), expected.as_numpy("OUTPUT0"))
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), values - values)
    grpc_client.close()


def test_bytes_classification_and_typed_json(http) -> None:
    text = triton_http.InferInput("text", [3], "BYTES")
    text.set_data_from_numpy(np.array([b"a", b"\xc3\xa9t\xc3\xa9", b""], dtype=object))
    echoed = http.infer("strings", [text]).as_numpy("echo")
    assert [bytes(e) for e in echoed] == [b"a", "été".encode(), b""]
    image = triton_http.InferInput("image", [2, 8], "UINT8")
    image.set_data_from_numpy(np.arange(16, dtype=np.uint8).reshape(2, 8), binary_data=False)
    top = http.infer(
        "classifier", [image], outputs=[triton_http.InferRequestedOutput("logits", class_count=2)]
    ).as_numpy("logits")
    assert top.shape == (2, 2)
    score, index, label = top[0][0].decode().split(":")
    assert label in {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}
    assert float(score) and index.isdigit()


def _post(url: str, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_errors_have_the_right_status_and_name_what_was_wrong(both, http) -> None:
    _, address = both
    base = f"http://{address}/v2/models"
    cases = {
        "not json": (f"{base}/negate/infer", b"{oops", 400, "not JSON"),
        "unknown model": (f"{base}/nope/infer", b"{}", 404, "unknown model 'nope'"),
        "wrong shape": (
            f"{base}/negate/infer",
            json.dumps(
                {"inputs": [{"name": "x", "datatype": "INT32", "shape": [1, 4], "data": [1] * 4}]}
            ).encode(),
            400,
            "input 'x': expected shape [-1, 3], got [1, 4]",
        ),
        "out of range": (
            f"{base}/classifier/infer",
            json.dumps(
                {
                    "inputs": [
                        {
                            "name": "image",
                            "datatype": "UINT8",
                            "shape": [1, 8],
                            "data": [1, 2, 3, 4, 5, 6, 7, 999],
                        }
                    ]
                }
            ).encode(),
            400,
            "value 999 is outside the range of uint8",
        ),
        "binary size past the body": (
            f"{base}/negate/infer",
            b'{"inputs":[{"name":"x","datatype":"INT32","shape":[1,3],'
            b'"parameters":{"binary_data_size":12}}]}',
            400,
            "Inference-Header-Content-Length",
        ),
    }
    for name, (url, body, status, fragment) in cases.items():
        headers = {"Content-Type": "application/json"}
        if name == "binary size past the body":
            headers["Inference-Header-Content-Length"] = str(len(body) + 5)
        code, answer = _post(url, body, headers)
        assert code == status, (name, answer)
        assert fragment in answer["error"], (name, answer)
        assert "(request id " in answer["error"]
    # A body past the limit is refused from its Content-Length, before it is sent.
    host, port = address.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /v2/models/negate/infer HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\nContent-Length: 2097152\r\n\r\n"
        )
        answer = b""
        while b"max_message_mb" not in answer and len(answer) < 4096:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        answer = answer.decode()
    assert answer.startswith("HTTP/1.1 400") and "max_message_mb" in answer
    with pytest.raises(InferenceServerException) as caught:
        http.load_model("negate")
    assert "model control mode is 'none'" in caught.value.message()
    assert caught.value.status() == "403"


def test_statistics_and_index_over_http(http) -> None:
    tensor = triton_http.InferInput("x", [1, 3], "INT32")
    tensor.set_data_from_numpy(np.array([[1, 2, 3]], np.int32))
    before = http.get_inference_statistics("negate")["model_stats"][0]
    assert http.infer("negate", [tensor]).as_numpy("y").tolist() == [[-1, -2, -3]]
    after = http.get_inference_statistics("negate")["model_stats"][0]
    assert int(after["inference_count"]) == int(before.get("inference_count", 0)) + 1
    names = {row["name"] for row in http.get_model_repository_index()}
    assert {"add_sub", "classifier", "negate", "strings", "versioned"} <= names


def test_tokens_and_repository_control_over_http(tmp_path) -> None:
    repo = standard_repository(tmp_path / "models")
    port = free_port()
    env = {"DEEPSERVE_INFERENCE_TOKEN": INFERENCE, "DEEPSERVE_ADMIN_TOKEN": ADMIN}
    args = ("--http-port", str(port), "--model-control-mode", "explicit")
    with run_server(repo, tmp_path, *args, env=env):
        client = triton_http.InferenceServerClient(f"127.0.0.1:{port}")
        assert client.is_server_ready()  # probes stay open
        tensor = triton_http.InferInput("x", [1, 3], "INT32")
        tensor.set_data_from_numpy(np.array([[1, 2, 3]], np.int32))
        with pytest.raises(InferenceServerException) as caught:
            client.infer("negate", [tensor])
        assert caught.value.status() == "401"
        user = {"Authorization": f"Bearer {INFERENCE}"}
        assert client.infer("negate", [tensor], headers=user).as_numpy("y").tolist() == [
            [-1, -2, -3]
        ]
        with pytest.raises(InferenceServerException) as caught:
            client.unload_model("negate", headers=user)
        assert caught.value.status() == "403"
        admin = {"Authorization": f"Bearer {ADMIN}"}
        client.unload_model("negate", headers=admin)
        assert not client.is_model_ready("negate")
        client.load_model("negate", headers=admin, config=json.dumps({"max_batch_size": 4}))
        assert client.get_model_config("negate", headers=user)["max_batch_size"] == 4
        client.close()


def test_repository_calls_with_bad_bodies_are_client_errors(both) -> None:
    _, address = both
    for path, body in (
        ("/v2/repository/index", b"[1, 2]"),
        ("/v2/repository/index", b"{oops"),
        ("/v2/repository/models/negate/load", b'{"parameters": {"config": "{not json"}}'),
    ):
        status, answer = _post(
            f"http://{address}{path}", body, {"Content-Type": "application/json"}
        )
        assert status in (400, 403), (path, answer)
        assert "(request id " in answer["error"]
