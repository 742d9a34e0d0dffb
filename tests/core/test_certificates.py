"""The certificate recipe of docs/security.md, run as written: its certificate names the
server's address, the SDK verifies it by IP address, and the server says at start what a
certificate names and when it does not name the address it binds."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from deepserve import Client
from deepserve.server.core.certificates import certificate_names

from ..onnx_models import standard_repository
from ..server_process import free_port, run_server

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def _recipe() -> str:
    text = (ROOT / "docs" / "security.md").read_text()
    found = re.search(r"<!-- certificate-recipe -->\n```sh\n(.*?)```", text, re.S)
    assert found, "docs/security.md lost its certificate recipe"
    return found.group(1)


def _run_recipe(folder: Path, server_ip: str) -> None:
    script = _recipe()
    assert "SERVER_IP=192.0.2.10" in script
    script = script.replace("SERVER_IP=192.0.2.10", f"SERVER_IP={server_ip}")
    subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=folder, check=True, capture_output=True,
        timeout=60,
    )  # fmt: skip


def test_the_recipes_certificate_is_verified_by_ip_address(tmp_path: Path) -> None:
    _run_recipe(tmp_path, "127.0.0.1")
    assert "127.0.0.1" in certificate_names((tmp_path / "server.crt").read_bytes())
    roots = (tmp_path / "ca.crt").read_bytes()
    repo = standard_repository(tmp_path / "models")
    tls = ["--tls-cert", str(tmp_path / "server.crt"), "--tls-key", str(tmp_path / "server.key")]
    credentials = grpc.ssl_channel_credentials(roots)
    with run_server(repo, tmp_path, *tls, credentials=credentials) as server:
        assert server.url.startswith("127.0.0.1:")
        with Client(server.url, root_certificates=roots) as sdk:
            assert sdk.models()
    log = server.log()
    assert "TLS certificate names (what clients may dial)" in log
    assert "does not name" not in log


def _start_log(repo: Path, folder: Path, stem: str, wanted: str) -> str:
    """The server's log once `wanted` is in it (TLS that clients here could not verify: the
    log, not a call, says what happened)."""
    log_path = folder / f"{stem}.log"
    command = [
        sys.executable, "-m", "deepserve.server", "--model-repository", str(repo),
        "--port", str(free_port()), "--http-port", "0", "--metrics-port", "0",
        "--tls-cert", str(folder / f"{stem}.crt"), "--tls-key", str(folder / f"{stem}.key"),
    ]  # fmt: skip
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while wanted not in log_path.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log_path.read_text()
            time.sleep(0.1)
        return log_path.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def test_a_certificate_that_does_not_name_the_address_is_warned_about(tmp_path: Path) -> None:
    _run_recipe(tmp_path, "192.0.2.10")  # names another machine's address, and localhost
    repo = standard_repository(tmp_path / "models")
    wanted = "the TLS certificate does not name 127.0.0.1, the address this server binds"
    assert wanted in _start_log(repo, tmp_path, "server", wanted)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout", "cn.key", "-out", "cn.crt"],
        cwd=tmp_path, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    assert certificate_names((tmp_path / "cn.crt").read_bytes()) == []
    wanted = "the TLS certificate has no subjectAltName"
    assert wanted in _start_log(repo, tmp_path, "cn", wanted)
