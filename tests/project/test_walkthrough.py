"""docs/walkthrough.md run as written: tokens made at random, the certificate recipe, a server
on every interface with TLS and tokens, a client's CLI, curl and the metrics on the server."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..core.test_certificates import _run_recipe
from ..server_process import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    not (shutil.which("openssl") and shutil.which("curl")), reason="needs openssl and curl"
)


def _block(name: str) -> str:
    text = (ROOT / "docs" / "walkthrough.md").read_text()
    found = re.search(rf"<!-- walkthrough: {name} -->\n```sh\n(.*?)```", text, re.S)
    assert found, f"docs/walkthrough.md lost its '{name}' block"
    return found.group(1)


def _ports(script: str, ports: dict[int, int]) -> str:
    for documented, free in ports.items():
        script = script.replace(f":{documented}", f":{free}")
    return script


def _bash(script: str, folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=folder, env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip


def test_the_walkthrough_serves_a_second_machine(tmp_path: Path) -> None:
    for shared in ("models", "docs"):
        (tmp_path / shared).symlink_to(ROOT / shared)
    env = {**os.environ, "SERVER_IP": "127.0.0.1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.pop("DEEPSERVE_TOKEN", None)
    made = _bash(_block("tokens"), tmp_path, env)
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "tokens").stat().st_mode & 0o077 == 0
    _run_recipe(tmp_path, "127.0.0.1")

    ports = {8001: free_port(), 8000: free_port(), 8002: free_port()}
    serve = _block("serve").strip()
    serve += f" \\\n  --port {ports[8001]} --http-port {ports[8000]} --metrics-port {ports[8002]}"
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log_file:
        server = subprocess.Popen(
            ["bash", "-c", f"exec {serve}"], cwd=tmp_path, env=env, stdout=log_file,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        # What the walkthrough says the server prints, once it has (a split server's front
        # ends listen after its engine has loaded the models).
        expected = [
            "model 'mnist' ready",
            "(TLS, bearer tokens required; ",
            f"Vision API on 0.0.0.0:{ports[8000]} (TLS, bearer tokens required)",
            f"metrics on http://127.0.0.1:{ports[8002]}/metrics (this host only)",
        ]
        deadline = time.monotonic() + 120
        while not all(line in log_path.read_text() for line in expected):
            assert server.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)

        client = _bash(_ports(_block("client"), ports), tmp_path, env)
        assert client.returncode == 0, client.stderr
        assert "mnist" in client.stdout  # the repository index
        assert "digit-7.png: 7 (" in client.stdout  # the CLI's classification
        assert '"label":"7"' in client.stdout  # curl over HTTPS

        metrics = _bash(_ports(_block("metrics"), ports), tmp_path, env)
        assert metrics.returncode == 0, metrics.stderr
        assert re.search(r"^deepserve_server_ready 1", metrics.stdout, re.M)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
