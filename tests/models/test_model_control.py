"""Model control modes (none, explicit, poll), paths confined to a model's folder, config
overrides checked like config.pbtxt, and what readiness says after an unload."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ..onnx_models import (
    CLASSIFIER_CONFIG,
    DIGIT_LABELS,
    add_constant,
    linear_classifier,
    write_model,
)
from ..server_process import run_server

EXPLICIT = ("--model-control-mode", "explicit")
LABELS = "\n".join(DIGIT_LABELS) + "\n"


def _classifier_repo(root: Path) -> Path:
    repo = root / "models"
    write_model(
        repo, "classifier", linear_classifier(), CLASSIFIER_CONFIG, files={"labels.txt": LABELS}
    )
    return repo


def _override(**changes: object) -> dict[str, object]:
    config: dict[str, object] = {
        "max_batch_size": 8,
        "input": [{"name": "image", "data_type": "TYPE_UINT8", "dims": [8]}],
        "output": [
            {
                "name": "logits",
                "data_type": "TYPE_FP32",
                "dims": [10],
                "label_filename": "labels.txt",
            }
        ],
    }
    config.update(changes)
    return config


def _load_error(
    client: triton.InferenceServerClient, config: dict[str, object]
) -> triton.InferenceServerException:
    with pytest.raises(triton.InferenceServerException) as caught:
        client.load_model("classifier", config=json.dumps(config))
    return caught.value


@pytest.fixture(scope="module")
def explicit_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[triton.InferenceServerClient, Path]]:
    """A server in explicit mode whose classifier folder holds a link to a file outside it."""
    root = tmp_path_factory.mktemp("explicit")
    repo = _classifier_repo(root)
    secret = root / "secret.txt"
    secret.write_text("root:x:0:0\n" * 10)
    (repo / "classifier" / "linked.txt").symlink_to(secret)
    with run_server(repo, root, *EXPLICIT) as server:
        client = triton.InferenceServerClient(server.url)
        yield client, root
        client.close()


def test_default_mode_refuses_load_and_unload(server) -> None:
    client = triton.InferenceServerClient(server.url)
    for call in (lambda: client.load_model("negate"), lambda: client.unload_model("negate")):
        with pytest.raises(triton.InferenceServerException) as caught:
            call()
        assert caught.value.status() == "StatusCode.PERMISSION_DENIED"
        assert "model control mode is 'none'" in caught.value.message()
        assert "--model-control-mode explicit" in caught.value.message()
    assert client.is_model_ready("negate")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {
                "output": [
                    {
                        "name": "logits",
                        "data_type": "TYPE_FP32",
                        "dims": [10],
                        "label_filename": "/etc/passwd",
                    }
                ]
            },
            "label_filename '/etc/passwd' must be a file name inside the model's folder",
        ),
        (
            {
                "output": [
                    {
                        "name": "logits",
                        "data_type": "TYPE_FP32",
                        "dims": [10],
                        "label_filename": "../../../../etc/hostname",
                    }
                ]
            },
            "must be a file name inside the model's folder",
        ),
        ({"default_model_filename": "../other/1/model.onnx"}, "default_model_filename"),
        ({"default_model_filename": "/tmp/model.onnx"}, "default_model_filename"),
        ({"platform": "tensorflow_savedmodel"}, "platform 'tensorflow_savedmodel' is not served"),
        ({"backend": "python"}, "backend 'python' is not served"),
        ({"instance_group": [{"count": 1000, "kind": "KIND_CPU"}]}, "at most 16 (--max-instances)"),
        (
            {"parameters": {"intra_op_thread_count": {"string_value": "100000"}}},
            "intra_op_thread_count 100000 is outside",
        ),
        (
            {"parameters": {"io_binding": {"string_value": "yes"}}},
            "parameter io_binding must be '0' or '1', got 'yes'",
        ),
        (
            {"parameters": {"pinned_buffers": {"string_value": "2"}}},
            "parameter pinned_buffers must be '0' or '1', got '2'",
        ),
        ({"max_batch_size": 1 << 20}, "max_batch_size 1048576 is outside"),
        ({"input": [{"name": "image", "data_type": "TYPE_FP64", "dims": [8]}]}, "config says FP64"),
        ({"name": "other"}, "names the model 'other'"),
    ],
)
def test_config_overrides_are_checked_like_config_files(
    explicit_server: tuple[triton.InferenceServerClient, Path],
    changes: dict[str, object],
    expected: str,
) -> None:
    client, root = explicit_server
    error = _load_error(client, _override(**changes))
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert expected in error.message()
    assert str(root) not in error.message()
    assert client.is_model_ready("classifier")  # the served version stays


def test_symbolic_link_out_of_the_model_folder_is_refused(
    explicit_server: tuple[triton.InferenceServerClient, Path],
) -> None:
    client, root = explicit_server
    config = _override(
        output=[
            {
                "name": "logits",
                "data_type": "TYPE_FP32",
                "dims": [10],
                "label_filename": "linked.txt",
            }
        ]
    )
    error = _load_error(client, config)
    assert "resolves outside the model's folder" in error.message()
    assert str(root) not in error.message()


def test_load_errors_never_quote_server_paths(tmp_path: Path) -> None:
    repo = _classifier_repo(tmp_path)
    write_model(repo, "corrupt", b"not an onnx file")
    write_model(repo, "latin1_labels", linear_classifier(), CLASSIFIER_CONFIG)
    (repo / "latin1_labels" / "labels.txt").write_bytes("z\xe9ro\n".encode("latin-1"))
    with run_server(repo, tmp_path, wait_ready=False) as server:
        client = triton.InferenceServerClient(server.url)
        for _ in range(100):
            index = {m.name: m for m in client.get_model_repository_index().models}
            if all(m.state != "LOADING" for m in index.values()) and len(index) == 3:
                break
            time.sleep(0.1)
        assert index["corrupt"].state == "UNAVAILABLE"
        assert "ONNX Runtime cannot load" in index["corrupt"].reason
        assert "<repository>" in index["corrupt"].reason
        assert str(tmp_path) not in index["corrupt"].reason
        assert "is not UTF-8 text" in index["latin1_labels"].reason
        assert client.is_model_ready("classifier")
        client.close()


def test_unload_on_purpose_is_what_readiness_reports(tmp_path: Path) -> None:
    """Documented: an unloaded model no longer counts for ServerReady (the server serves what
    it was asked to), ModelReady is false, its health service NOT_SERVING, and the index says
    why."""
    repo = _classifier_repo(tmp_path)
    write_model(
        repo, "other", linear_classifier(seed=1), CLASSIFIER_CONFIG, files={"labels.txt": LABELS}
    )
    with run_server(repo, tmp_path, *EXPLICIT) as server:
        client = triton.InferenceServerClient(server.url)
        client.unload_model("other")
        assert client.is_server_ready()
        assert not client.is_model_ready("other")
        with grpc.insecure_channel(server.url) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            status = health.Check(health_pb2.HealthCheckRequest(service="other")).status
            assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        row = next(m for m in client.get_model_repository_index().models if m.name == "other")
        assert (row.state, row.reason) == (
            "UNAVAILABLE",
            "unloaded by a RepositoryModelUnload call",
        )
        client.close()


def _value(client: triton.InferenceServerClient, model: str) -> float:
    tensor = triton.InferInput("x", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 4), np.float32))
    return float(client.infer(model, [tensor]).as_numpy("y")[0, 0])


def _until(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise TimeoutError("condition not reached")


def test_poll_mode_follows_the_repository(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    write_model(repo, "counter", add_constant(1.0))
    poll = ("--model-control-mode", "poll", "--repository-poll-seconds", "0.3")
    with run_server(repo, tmp_path, *poll) as server:
        client = triton.InferenceServerClient(server.url)
        assert _value(client, "counter") == 1.0
        with pytest.raises(triton.InferenceServerException) as caught:
            client.load_model("counter")
        assert caught.value.status() == "StatusCode.PERMISSION_DENIED"
        assert "'poll'" in caught.value.message()
        # A new version appears: it is loaded and served, no restart.
        write_model(repo, "counter", add_constant(2.0), versions=(2,))
        _until(lambda: client.is_model_ready("counter", "2"))
        assert _value(client, "counter") == 2.0
        # A new model appears.
        write_model(repo, "fresh", add_constant(7.0))
        _until(lambda: client.is_model_ready("fresh"))
        assert _value(client, "fresh") == 7.0
        # A model goes away.
        shutil.rmtree(repo / "fresh")
        _until(lambda: not client.is_model_ready("fresh"))
        assert _value(client, "counter") == 2.0
        client.close()
    assert "repository poll: model 'counter' changed" in server.log()
