"""System shared memory end to end, with tritonclient's own shared memory module: regions
registered over gRPC and HTTP, inputs read from them and outputs written into them, the
status and unregister calls, and each way a request can misuse a region answered with a
clear error, never INTERNAL."""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.http as triton_http
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from ..onnx_models import ADD_SUB_CONFIG, add_sub, write_model
from ..server_process import RunningServer, free_port, run_server

BYTES = 16 * 4  # one FP32 [1, 16] tensor


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("shm")
    write_model(folder / "models", "add_sub", add_sub(), ADD_SUB_CONFIG)
    http_port = free_port()
    with run_server(
        folder / "models", folder, "--http-port", str(http_port), "--shared-memory", "on"
    ) as running:
        running.http_port = http_port
        yield running


@pytest.fixture()
def regions() -> Iterator[tuple[str, str]]:
    """An input region holding INPUT0 and INPUT1, an output region for both outputs."""
    tag = uuid.uuid4().hex[:8]
    inputs = shm.create_shared_memory_region(f"in-{tag}", f"/deepserve-in-{tag}", 2 * BYTES)
    outputs = shm.create_shared_memory_region(f"out-{tag}", f"/deepserve-out-{tag}", 2 * BYTES)
    a = np.arange(16, dtype=np.float32)[None]
    shm.set_shared_memory_region(inputs, [a, np.full((1, 16), 10, np.float32)])
    yield tag, outputs  # type: ignore[misc]
    shm.destroy_shared_memory_region(inputs)
    shm.destroy_shared_memory_region(outputs)


def _request(module, tag: str, input_offset: int = 0, output_size: int = BYTES):
    inputs = [module.InferInput(n, [1, 16], "FP32") for n in ("INPUT0", "INPUT1")]
    inputs[0].set_shared_memory(f"in-{tag}", BYTES, input_offset)
    inputs[1].set_shared_memory(f"in-{tag}", BYTES, BYTES)
    outputs = [module.InferRequestedOutput(n) for n in ("OUTPUT0", "OUTPUT1")]
    outputs[0].set_shared_memory(f"out-{tag}", output_size)
    outputs[1].set_shared_memory(f"out-{tag}", BYTES, BYTES)
    return inputs, outputs


def _check_answers(handle) -> None:
    a = np.arange(16, dtype=np.float32)[None]
    np.testing.assert_array_equal(shm.get_contents_as_numpy(handle, np.float32, [1, 16]), a + 10)
    np.testing.assert_array_equal(
        shm.get_contents_as_numpy(handle, np.float32, [1, 16], offset=BYTES), a - 10
    )


def _status(client, transport: str, name: str = ""):
    """gRPC's status as JSON (a map of regions), HTTP's as it comes (a list)."""
    if transport == "grpc":
        return client.get_system_shared_memory_status(name, as_json=True)
    return client.get_system_shared_memory_status(name)


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_inputs_and_outputs_travel_through_shared_memory(
    server: RunningServer, regions, transport: str
) -> None:
    tag, outputs = regions
    module = triton if transport == "grpc" else triton_http
    url = server.url if transport == "grpc" else f"127.0.0.1:{server.http_port}"
    client = module.InferenceServerClient(url)
    client.register_system_shared_memory(f"in-{tag}", f"/deepserve-in-{tag}", 2 * BYTES)
    client.register_system_shared_memory(f"out-{tag}", f"/deepserve-out-{tag}", 2 * BYTES)
    status = _status(client, transport, f"in-{tag}")
    described = status["regions"][f"in-{tag}"] if transport == "grpc" else status[0]
    assert described["key"] == f"/deepserve-in-{tag}"
    assert int(described["byte_size"]) == 2 * BYTES

    inputs, wanted = _request(module, tag)
    result = client.infer("add_sub", inputs, outputs=wanted)
    _check_answers(outputs)
    answered = result.get_output("OUTPUT1")
    parameters = answered.parameters if transport == "grpc" else answered["parameters"]
    region = parameters["shared_memory_region"]
    assert (region.string_param if transport == "grpc" else region) == f"out-{tag}"

    errors = {
        "offset past the region": (_request(module, tag, input_offset=BYTES + 4), "outside"),
        "output region too small": (_request(module, tag, output_size=8), "do not fit the 8"),
    }
    for what, ((inputs, wanted), words) in errors.items():
        with pytest.raises(InferenceServerException, match=words) as refused:
            client.infer("add_sub", inputs, outputs=wanted)
        assert "400" in str(refused.value.status()) or refused.value.status() == (
            "StatusCode.INVALID_ARGUMENT"
        ), what
    client.unregister_system_shared_memory(f"in-{tag}")
    with pytest.raises(InferenceServerException, match=f"'in-{tag}' is not registered"):
        client.infer("add_sub", *_request(module, tag)[:1], outputs=_request(module, tag)[1])
    client.unregister_system_shared_memory()  # every region
    assert not _status(client, transport) or _status(client, transport) == {}
    client.close()


def test_registering_what_is_not_a_region_is_refused(server: RunningServer, tmp_path: Path):
    client = triton.InferenceServerClient(server.url)
    cases = {
        "/../../etc/passwd": "expected the name of a POSIX shared memory object",
        "/deepserve-absent": "cannot open the shared memory object",
    }
    for key, words in cases.items():
        with pytest.raises(InferenceServerException, match=words) as refused:
            client.register_system_shared_memory("bad", key, 64)
        assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert str(tmp_path) not in str(refused.value)
    client.close()


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"key": 5, "byte_size": 64}', "key must be a string, got 5"),
        (b'{"key": "/deepserve-x", "byte_size": "64"}', 'byte_size must be an integer, got "64"'),
        (b'{"key": "/deepserve-x", "byte_size": 64, "offset": 1.5}', "offset must be an integer"),
        (b'{"key": "/deepserve-x", "byte_size": true}', "byte_size must be an integer, got true"),
        (b'{"key": "/deepserve-x"}', "byte_size must be an integer, got null"),
        (b'["/deepserve-x", 64]', "must be a JSON object"),
        (b"not json", "not JSON"),
    ],
)
def test_an_http_register_body_of_the_wrong_shape_is_a_400(
    server: RunningServer, body: bytes, words: str
):
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
    connection.request(
        "POST",
        "/v2/systemsharedmemory/region/r/register",
        body=body,
        headers={"Content-Type": "application/json"},
    )
    answer = connection.getresponse()
    error = json.loads(answer.read())["error"]
    connection.close()
    assert answer.status == 400, error
    assert words in error, error


def test_without_tokens_shared_memory_is_off_unless_asked_for(
    bundled_server: RunningServer,
) -> None:
    """Any local user could otherwise map this server's user's shared memory through it."""
    client = triton.InferenceServerClient(bundled_server.url)
    with pytest.raises(InferenceServerException, match="--shared-memory on") as refused:
        client.register_system_shared_memory("r", "/deepserve-anything", 64)
    assert refused.value.status() == "StatusCode.FAILED_PRECONDITION"
    client.close()
