"""Loading, reloading and unloading models; failed loads; readiness. Each test runs its own
server on its own repository, since it changes what is loaded."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from ..onnx_models import ADD_SUB_CONFIG, add_constant, add_sub, int_negate, write_model
from ..server_process import run_server

EXPLICIT = ("--model-control-mode", "explicit")


def _negate(client: triton.InferenceServerClient, model: str = "negate") -> np.ndarray:
    tensor = triton.InferInput("x", [1, 3], "INT32")
    tensor.set_data_from_numpy(np.array([[1, 2, 3]], np.int32))
    return client.infer(model, [tensor]).as_numpy("y")


def _wait_until_settled(client: triton.InferenceServerClient) -> None:
    """Until no model is LOADING any more (the server is live before models load)."""
    for _ in range(400):
        states = {m.state for m in client.get_model_repository_index().models}
        if "LOADING" not in states and "READY" in states:
            return
        threading.Event().wait(0.05)
    raise TimeoutError("models still loading")


def test_failed_model_is_reported_and_others_keep_serving(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    write_model(repo, "negate", int_negate())
    mismatched_config = ADD_SUB_CONFIG.replace('name: "add_sub"', "").replace(
        "TYPE_FP32", "TYPE_INT64"
    )
    write_model(repo, "corrupt", b"this is not an onnx file")
    write_model(repo, "bad_config", add_sub(), config="max_batch_size: [oops")
    write_model(repo, "mismatch", add_sub(), mismatched_config)
    with run_server(repo, tmp_path, wait_ready=False) as server:
        client = triton.InferenceServerClient(server.url)
        _wait_until_settled(client)
        np.testing.assert_array_equal(_negate(client), [[-1, -2, -3]])
        assert not client.is_server_ready()  # strict readiness: a model failed
        index = {m.name: m for m in client.get_model_repository_index().models}
        assert index["negate"].state == "READY"
        for name in ("corrupt", "bad_config", "mismatch"):
            assert index[name].state == "UNAVAILABLE"
            assert index[name].reason
            assert not client.is_model_ready(name)
        assert "ONNX Runtime cannot load" in index["corrupt"].reason
        assert "does not parse" in index["bad_config"].reason
        assert "config says INT64, the model has FP32" in index["mismatch"].reason
        with pytest.raises(triton.InferenceServerException) as caught:
            _negate(client, "corrupt")
        assert caught.value.status() == "StatusCode.UNAVAILABLE"
        with grpc.insecure_channel(server.url) as channel:
            ready_only = pb_grpc.GRPCInferenceServiceStub(channel).RepositoryIndex(
                pb.RepositoryIndexRequest(ready=True)
            )
        assert [(m.name, m.state) for m in ready_only.models] == [("negate", "READY")]
        client.close()
    log = server.log()
    assert "model 'corrupt' failed to load" in log


def test_non_strict_readiness_is_ready_with_a_failed_model(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    write_model(repo, "negate", int_negate())
    write_model(repo, "corrupt", b"garbage")
    with run_server(repo, tmp_path, "--no-strict-readiness") as server:
        assert triton.InferenceServerClient(server.url).is_server_ready()


def test_empty_repository_is_live_but_not_ready(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    repo.mkdir()
    with run_server(repo, tmp_path, wait_ready=False) as server:
        client = triton.InferenceServerClient(server.url)
        assert client.is_server_live()
        threading.Event().wait(0.5)
        assert not client.is_server_ready()


def test_unload_then_load_again(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    write_model(repo, "negate", int_negate())
    write_model(repo, "other", int_negate())
    with run_server(repo, tmp_path, *EXPLICIT) as server:
        client = triton.InferenceServerClient(server.url)
        client.unload_model("negate")
        assert not client.is_model_ready("negate")
        with pytest.raises(triton.InferenceServerException) as caught:
            _negate(client)
        assert caught.value.status() == "StatusCode.UNAVAILABLE"
        # An unloaded model no longer counts for readiness; the other one still serves.
        assert client.is_server_ready()
        index = {m.name: m.state for m in client.get_model_repository_index().models}
        assert index["negate"] == "UNAVAILABLE"
        client.load_model("negate")
        assert client.is_model_ready("negate")
        np.testing.assert_array_equal(_negate(client), [[-1, -2, -3]])
        with pytest.raises(triton.InferenceServerException) as caught:
            client.load_model("not_in_repository")
        assert caught.value.status() == "StatusCode.NOT_FOUND"


def test_model_added_to_repository_loads_on_request(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    write_model(repo, "negate", int_negate())
    with run_server(repo, tmp_path, *EXPLICIT) as server:
        client = triton.InferenceServerClient(server.url)
        write_model(repo, "added", int_negate())
        index = {m.name: m.state for m in client.get_model_repository_index().models}
        assert index["added"] == "UNAVAILABLE"
        client.load_model("added")
        np.testing.assert_array_equal(_negate(client, "added"), [[-1, -2, -3]])


def test_reload_with_new_version_drops_no_traffic(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    write_model(repo, "counter", add_constant(1.0))
    with run_server(repo, tmp_path, *EXPLICIT) as server:
        client = triton.InferenceServerClient(server.url)
        stop = threading.Event()
        seen: list[float] = []
        errors: list[Exception] = []

        def traffic() -> None:
            own = triton.InferenceServerClient(server.url)
            x = triton.InferInput("x", [1, 4], "FP32")
            x.set_data_from_numpy(np.zeros((1, 4), np.float32))
            while not stop.is_set():
                try:
                    seen.append(float(own.infer("counter", [x]).as_numpy("y")[0, 0]))
                except Exception as exc:
                    errors.append(exc)
            own.close()

        workers = [threading.Thread(target=traffic) for _ in range(3)]
        for worker in workers:
            worker.start()
        threading.Event().wait(0.3)
        write_model(repo, "counter", add_constant(2.0), versions=(2,))
        client.load_model("counter")
        threading.Event().wait(0.3)
        stop.set()
        for worker in workers:
            worker.join()
        assert not errors, errors[:3]
        assert seen[0] == 1.0 and seen[-1] == 2.0
        assert set(seen) == {1.0, 2.0}
        assert client.get_model_metadata("counter").versions == ["2"]


def test_load_with_config_override(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    write_model(repo, "negate", int_negate())
    with run_server(repo, tmp_path, *EXPLICIT) as server:
        client = triton.InferenceServerClient(server.url)
        client.load_model("negate", config=json.dumps({"max_batch_size": 2}))
        assert client.get_model_config("negate").config.max_batch_size == 2
        tensor = triton.InferInput("x", [3, 3], "INT32")
        tensor.set_data_from_numpy(np.zeros((3, 3), np.int32))
        with pytest.raises(triton.InferenceServerException) as caught:
            client.infer("negate", [tensor])
        assert "batch size 3 is outside 1..2" in str(caught.value)


def test_load_only_named_models(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    write_model(repo, "negate", int_negate())
    write_model(repo, "idle", int_negate())
    with run_server(repo, tmp_path, *EXPLICIT, "--model", "negate") as server:
        client = triton.InferenceServerClient(server.url)
        assert client.is_model_ready("negate")
        assert not client.is_model_ready("idle")


def test_sigterm_drains_and_exits_cleanly(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    write_model(repo, "negate", int_negate())
    with run_server(repo, tmp_path, *EXPLICIT) as server:
        _negate(triton.InferenceServerClient(server.url))
        process = server.process
    assert process.returncode == 0
    assert "stopped" in server.log()
    shutil.rmtree(repo)
