"""A deepserve server started on this machine for a benchmark or load test, on a free port."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from deepserve import Client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def local_server(repository: Path, log: Path, *args: str, timeout: float = 120) -> Iterator[str]:
    """Start `deepserve serve` on `repository` (extra flags in `args`), wait until it is ready,
    yield its address, stop it with SIGTERM."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "deepserve.server",
        "--model-repository",
        str(repository),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--metrics-port",
        "0",
        "--http-port",
        "0",
        *args,
    ]
    with log.open("w") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    url = f"127.0.0.1:{port}"
    try:
        client = Client(url, retries=0, timeout=2)
        deadline = time.monotonic() + timeout
        while not client.ready():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not become ready:\n{log.read_text()}")
            time.sleep(0.2)
        client.close()
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
