"""A real deepserve server in a subprocess on a free port, for the tests, the benchmarks and the
load tests alike: `run_server` gives the process, its address and its log; `local_server` just
the address of a ready server."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

_handed_out: set[int] = set()


def free_port() -> int:
    """A port free now, never one this process handed out before: the kernel may give a port
    just released again, and a server started with two of them would bind one twice."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen
    log_path: Path
    metrics_port: int = 0
    http_port: int = 0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_until_up(
    url: str,
    process: subprocess.Popen,
    log_path: Path,
    ready: bool,
    timeout: float,
    credentials: grpc.ChannelCredentials | None,
) -> None:
    """Until the gRPC server at `url` is live (or ready); its log in the error when it exits
    or the time runs out."""
    deadline = time.monotonic() + timeout
    channel = grpc.secure_channel(url, credentials) if credentials else grpc.insecure_channel(url)
    with channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {process.returncode}:\n{log_path.read_text()}"
                )
            with contextlib.suppress(grpc.RpcError):
                if not ready:
                    if stub.ServerLive(pb.ServerLiveRequest(), timeout=1).live:
                        return
                elif stub.ServerReady(pb.ServerReadyRequest(), timeout=1).ready:
                    return
            time.sleep(0.1)
    raise TimeoutError(
        f"server at {url} not {'ready' if ready else 'live'}:\n{log_path.read_text()}"
    )


@contextlib.contextmanager
def run_server(
    repository: Path,
    log_dir: Path,
    *extra_args: str,
    wait_ready: bool = True,
    timeout: float = 60.0,
    port: int | None = None,
    env: dict[str, str] | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    log_path: Path | None = None,
) -> Iterator[RunningServer]:
    """`env` adds to the environment (tokens); `credentials` is what the wait for readiness
    connects with when the server speaks TLS. Stopped with SIGTERM (a drain) at the end."""
    port = port or free_port()
    log_path = log_path or log_dir / f"server-{port}.log"
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
        "--grace-seconds",
        "2",
        "--metrics-port",
        "0",
        "--http-port",
        "0",
        *extra_args,
    ]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, env=environment
        )
    server = RunningServer(url=f"127.0.0.1:{port}", process=process, log_path=log_path)
    try:
        wait_until_up(server.url, process, log_path, wait_ready, timeout, credentials)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def local_server(repository: Path, log: Path, *args: str, timeout: float = 120) -> Iterator[str]:
    """A ready server on `repository` (extra flags in `args`): its gRPC address."""
    with run_server(repository, log.parent, *args, timeout=timeout, log_path=log) as server:
        yield server.url


@contextlib.contextmanager
def module_server(module: str, *args: str, timeout: float = 30) -> Iterator[RunningServer]:
    """`python -m MODULE --port PORT ARGS...` (a gRPC server that answers ServerLive) in a
    subprocess on a free port, until it is live; yields it, stops it after."""
    port = free_port()
    url = f"127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as scratch:
        log_path = Path(scratch) / "server.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", module, "--port", str(port), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=Path(__file__).resolve().parents[1],
            )
        try:
            wait_until_up(url, process, log_path, ready=False, timeout=timeout, credentials=None)
            yield RunningServer(url=url, process=process, log_path=log_path)
        finally:
            process.terminate()
            process.wait(10)
