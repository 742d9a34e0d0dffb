"""Bearer tokens with scopes, TLS and mutual TLS, and the refusal to expose a server with no
credentials: real servers, real clients (tritonclient, the SDK, the CLI)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc

from deepserve import AuthenticationError, Client, PermissionDeniedError, UnavailableError

from ..certificates import make_pki
from ..onnx_models import standard_repository
from ..server_process import free_port, run_server

INFERENCE_TOKEN = "inference-token-0123456789"
ADMIN_TOKEN = "admin-token-0123456789abcdef"
FILE_TOKEN = "file-token-0123456789abcdef"
ROOT = Path(__file__).resolve().parents[2]
DIGIT = ROOT / "docs" / "images" / "digit-7.png"


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _negate(client: triton.InferenceServerClient, headers: dict[str, str] | None) -> np.ndarray:
    tensor = triton.InferInput("x", [1, 3], "INT32")
    tensor.set_data_from_numpy(np.array([[1, 2, 3]], np.int32))
    return client.infer("negate", [tensor], headers=headers).as_numpy("y")


def _status(call) -> str:
    with pytest.raises(triton.InferenceServerException) as caught:
        call()
    return caught.value.status().removeprefix("StatusCode.")


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("tokens")
    repo = standard_repository(root / "models")
    token_file = root / "tokens.txt"
    token_file.write_text(f"# scopes token\ninference {FILE_TOKEN}\n")
    env = {"DEEPSERVE_INFERENCE_TOKEN": INFERENCE_TOKEN, "DEEPSERVE_ADMIN_TOKEN": ADMIN_TOKEN}
    with run_server(
        repo, root, "--token-file", str(token_file), "--model-control-mode", "explicit", env=env
    ) as server:
        yield server.url, token_file


def test_calls_without_a_token_are_unauthenticated(token_server) -> None:
    url, _ = token_server
    client = triton.InferenceServerClient(url)
    assert _status(lambda: _negate(client, None)) == "UNAUTHENTICATED"
    assert _status(lambda: _negate(client, _bearer("not-a-known-token-at-all"))) == (
        "UNAUTHENTICATED"
    )
    assert _status(lambda: _negate(client, {"authorization": INFERENCE_TOKEN})) == (
        "UNAUTHENTICATED"
    )
    assert _status(lambda: client.get_model_metadata("negate")) == "UNAUTHENTICATED"
    assert _status(lambda: client.get_model_repository_index()) == "UNAUTHENTICATED"
    with Client(url, retries=0) as sdk, pytest.raises(AuthenticationError) as caught:
        sdk.classify(DIGIT.read_bytes(), model="classifier")
    assert "bearer token" in str(caught.value)
    # Probes stay open.
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("negate")
    with grpc.insecure_channel(url) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    client.close()


def test_streams_need_a_token_too(token_server) -> None:
    url, _ = token_server
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc as pb_grpc

    request = pb.ModelInferRequest(model_name="negate")
    request.inputs.add(name="x", datatype="INT32", shape=[1, 3])
    request.raw_input_contents.append(np.array([[1, 2, 3]], np.int32).tobytes())
    with grpc.insecure_channel(url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.ModelStreamInfer(iter([request]), timeout=10))
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        answers = list(
            stub.ModelStreamInfer(
                iter([request]), timeout=10, metadata=(("authorization", f"Bearer {FILE_TOKEN}"),)
            )
        )
    assert not answers[0].error_message
    values = np.frombuffer(answers[0].infer_response.raw_output_contents[0], np.int32)
    assert values.tolist() == [-1, -2, -3]


def test_inference_scope_infers_but_cannot_administer(token_server) -> None:
    url, _ = token_server
    client = triton.InferenceServerClient(url)
    headers = _bearer(INFERENCE_TOKEN)
    np.testing.assert_array_equal(_negate(client, headers), [[-1, -2, -3]])
    assert client.get_model_metadata("negate", headers=headers).name == "negate"
    for call in (
        lambda: client.get_inference_statistics(headers=headers),
        lambda: client.load_model("negate", headers=headers),
        lambda: client.unload_model("negate", headers=headers),
    ):
        assert _status(call) == "PERMISSION_DENIED"
    with pytest.raises(triton.InferenceServerException) as caught:
        client.get_inference_statistics(headers=headers)
    assert "needs the 'admin' scope" in caught.value.message()
    with Client(url, token=INFERENCE_TOKEN) as sdk:
        assert sdk.models()
    client.close()


def test_admin_scope_administers_and_infers(token_server) -> None:
    url, _ = token_server
    client = triton.InferenceServerClient(url)
    headers = _bearer(ADMIN_TOKEN)
    stats = client.get_inference_statistics("negate", headers=headers)
    assert stats.model_stats[0].name == "negate"
    client.load_model("negate", headers=headers)
    np.testing.assert_array_equal(_negate(client, headers), [[-1, -2, -3]])
    client.close()


def _until_accepted(client: triton.InferenceServerClient, token: str, seconds: float = 10) -> None:
    """Until the server takes `token` (it re-reads the token file within a second)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            _negate(client, _bearer(token))
            return
        except triton.InferenceServerException:
            time.sleep(0.2)


def test_token_file_is_reread_when_it_changes(token_server) -> None:
    url, token_file = token_server
    client = triton.InferenceServerClient(url)
    np.testing.assert_array_equal(_negate(client, _bearer(FILE_TOKEN)), [[-1, -2, -3]])
    rotated = "rotated-token-0123456789abcdef"
    token_file.write_text(f"inference,admin {rotated}\n")
    _until_accepted(client, rotated)
    assert client.get_inference_statistics(headers=_bearer(rotated)).model_stats
    assert _status(lambda: _negate(client, _bearer(FILE_TOKEN))) == "UNAUTHENTICATED"
    token_file.write_text(f"inference {FILE_TOKEN}\n")  # as the other tests expect
    _until_accepted(client, FILE_TOKEN)
    client.close()


def test_cli_sends_the_token_from_the_environment(token_server) -> None:
    url, _ = token_server
    command = [sys.executable, "-m", "deepserve.cli", "models", "--url", url]
    env = {k: v for k, v in os.environ.items() if k != "DEEPSERVE_TOKEN"}
    refused = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert refused.returncode != 0 and "UNAUTHENTICATED" in refused.stderr
    assert "Traceback" not in refused.stderr and "bearer token" in refused.stderr
    env["DEEPSERVE_TOKEN"] = INFERENCE_TOKEN
    listed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "negate" in listed.stdout


def test_cli_reads_the_servers_token_file(token_server) -> None:
    """The file the server reads ('<scopes> <token>' lines) works for the client as it is."""
    url, token_file = token_server
    command = [sys.executable, "-m", "deepserve.cli", "models", "--url", url]
    env = {k: v for k, v in os.environ.items() if k != "DEEPSERVE_TOKEN"}
    listed = subprocess.run(
        [*command, "--token-file", str(token_file)], capture_output=True, text=True, env=env,
        timeout=60,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert "negate" in listed.stdout


def test_sdk_maps_a_missing_scope_to_permission_denied(token_server) -> None:
    url, _ = token_server
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc as pb_grpc

    from deepserve.errors import from_rpc_error

    with grpc.insecure_channel(url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelStatistics(
                pb.ModelStatisticsRequest(),
                metadata=(("authorization", f"Bearer {INFERENCE_TOKEN}"),),
            )
    assert isinstance(from_rpc_error(caught.value), PermissionDeniedError)


def test_exposing_every_interface_without_tokens_is_refused(tmp_path: Path) -> None:
    repo = standard_repository(tmp_path / "models")
    command = [
        sys.executable,
        "-m",
        "deepserve.server",
        "--model-repository",
        str(repo),
        "--host",
        "0.0.0.0",
        "--port",
        str(free_port()),
        "--metrics-port",
        "0",
    ]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DEEPSERVE_ADMIN", "DEEPSERVE_INF"))
    }
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2
    assert "refusing to bind 0.0.0.0 with no tokens" in result.stderr
    assert "--allow-unauthenticated" in result.stderr


# ---- TLS -------------------------------------------------------------------------------------


def _tls_args(server_pem, client_ca=None) -> list[str]:
    args = ["--tls-cert", str(server_pem.cert), "--tls-key", str(server_pem.key)]
    return [*args, "--tls-client-ca", str(client_ca.cert)] if client_ca else args


def test_tls_serves_verified_clients_only(tmp_path: Path) -> None:
    repo = standard_repository(tmp_path / "models")
    ca, server_pem, _ = make_pki(tmp_path / "pki")
    roots = ca.cert.read_bytes()
    credentials = grpc.ssl_channel_credentials(roots)
    with run_server(repo, tmp_path, *_tls_args(server_pem), credentials=credentials) as server:
        with Client(server.url, root_certificates=roots) as sdk:
            assert sdk.models()
        triton_client = triton.InferenceServerClient(
            server.url, ssl=True, root_certificates=str(ca.cert)
        )
        np.testing.assert_array_equal(_negate(triton_client, None), [[-1, -2, -3]])
        triton_client.close()
        with Client(server.url, retries=0, timeout=3) as plaintext, pytest.raises(UnavailableError):
            plaintext.models()
        # Certificates rotate without a restart: new connections get the new one.
        new_ca, new_server_pem, _ = make_pki(tmp_path / "pki2", name="rotated")
        server_pem.key.write_bytes(new_server_pem.key.read_bytes())
        server_pem.cert.write_bytes(new_server_pem.cert.read_bytes())
        with Client(server.url, root_certificates=new_ca.cert.read_bytes(), timeout=5) as rotated:
            assert rotated.models()
    assert "TLS certificate files changed" in server.log()


def test_mutual_tls_needs_a_client_certificate(tmp_path: Path) -> None:
    repo = standard_repository(tmp_path / "models")
    ca, server_pem, client_pem = make_pki(tmp_path / "pki")
    roots = ca.cert.read_bytes()
    credentials = grpc.ssl_channel_credentials(
        roots, client_pem.key.read_bytes(), client_pem.cert.read_bytes()
    )
    args = _tls_args(server_pem, client_ca=ca)
    with run_server(repo, tmp_path, *args, credentials=credentials) as server:
        with Client(
            server.url,
            root_certificates=roots,
            client_certificate=client_pem.cert.read_bytes(),
            client_key=client_pem.key.read_bytes(),
        ) as sdk:
            assert sdk.models()
        with (
            Client(server.url, root_certificates=roots, retries=0, timeout=3) as anonymous,
            pytest.raises(UnavailableError) as caught,
        ):
            anonymous.models()
        assert "UNAVAILABLE" in str(caught.value)
        health = subprocess.run(
            [
                sys.executable, "-m", "deepserve.cli", "health", "--url", server.url,
                "--tls-ca", str(ca.cert), "--tls-cert", str(client_pem.cert),
                "--tls-key", str(client_pem.key),
            ],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert health.returncode == 0, health.stderr
        assert "SERVING" in health.stdout


def test_the_http_port_speaks_https_with_the_same_certificate(tmp_path: Path) -> None:
    import ssl
    import urllib.request

    repo = standard_repository(tmp_path / "models")
    ca, server_pem, _ = make_pki(tmp_path / "pki")
    credentials = grpc.ssl_channel_credentials(ca.cert.read_bytes())
    http_port = free_port()
    args = [*_tls_args(server_pem), "--http-port", str(http_port)]
    with run_server(repo, tmp_path, *args, credentials=credentials) as server:
        context = ssl.create_default_context(cafile=str(ca.cert))
        url = f"https://127.0.0.1:{http_port}/v2/health/ready"
        with urllib.request.urlopen(url, context=context, timeout=10) as response:
            assert response.status == 200
        with pytest.raises(OSError):  # plaintext HTTP is not spoken on that port
            urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v2/health/ready", timeout=5)
    # At start the server says every port it opened and how each is protected.
    log = server.log()
    assert re.search(r"deepserve listening on 127\.0\.0\.1:\d+ \(TLS, no authentication;", log)
    assert f"Vision API on 127.0.0.1:{http_port} (TLS, no authentication)" in log
    assert "Prometheus metrics off (--metrics-port 0)" in log


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("inference", "expected '<scopes> <token>'"),
        ("root 0123456789abcdef0123", "scopes must be from ['inference', 'admin']"),
        ("inference short", "tokens need 24 characters or more"),
    ],
)
def test_a_bad_token_file_stops_the_start_with_a_clear_message(
    tmp_path: Path, content: str, message: str
) -> None:
    repo = standard_repository(tmp_path / "models")
    tokens = tmp_path / "tokens"
    tokens.write_text(content + "\n")
    command = [
        sys.executable, "-m", "deepserve.server", "--model-repository", str(repo),
        "--port", str(free_port()), "--http-port", "0", "--metrics-port", "0",
        "--token-file", str(tokens),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr and "line 1" in result.stderr
    assert content.split()[-1] not in result.stderr or len(content.split()) == 1  # no token echoed
