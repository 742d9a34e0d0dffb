"""Sequences past one replica: two servers behind nginx running the shipped docker/proxy
config (its upstreams pointed at them), which hashes the x-sequence-id header. Every step of
each sequence lands on the server that holds its state; a replica that goes away ends its
sequences with a clear error on the next step, and new sequences go on on the other."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from deepserve import Client

from ..onnx_models import accumulator, accumulator_config, write_model
from ..server_process import RunningServer, free_port, run_server

ROOT = Path(__file__).resolve().parents[2]
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
pytestmark = pytest.mark.skipif(
    NGINX is None, reason="needs nginx (`apt-get install nginx-light`; make test installs it)"
)


def proxy_config(
    grpc_ports: list[int], http_ports: list[int], listen: tuple[int, int], pid: Path
) -> str:
    """The shipped config with its upstreams and ports replaced, and nothing else."""
    text = (ROOT / "docker" / "proxy" / "nginx.conf").read_text()
    grpc = "\n".join(
        f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=10s;" for p in grpc_ports
    )
    http = "\n".join(
        f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=10s;" for p in http_ports
    )
    text = re.sub(r"        server deepserve-replica:8001[^\n]*", grpc, text)
    text = re.sub(r"        server deepserve-replica:8000[^\n]*", http, text)
    text = text.replace("listen 8001 http2;", f"listen 127.0.0.1:{listen[0]} http2;")
    text = text.replace("listen 8000;", f"listen 127.0.0.1:{listen[1]};")
    scratch = pid.parent
    return text.replace(
        "events {}",
        f"pid {pid};\nerror_log {scratch}/error.log;\nevents {{}}",
    ).replace(
        "\nhttp {",
        f"\nhttp {{\n    access_log off;\n    client_body_temp_path {scratch}/body;\n"
        f"    proxy_temp_path {scratch}/proxy;\n",
    )


def _live(url: str) -> bool:
    try:
        return triton.InferenceServerClient(url).is_server_live()
    except InferenceServerException:
        return False


class Replicas:
    def __init__(
        self, servers: list[RunningServer], proxy: str, http: str, nginx: subprocess.Popen
    ) -> None:
        self.servers = servers
        self.proxy = proxy
        self.http = http
        self.nginx = nginx


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    folder = tmp_path_factory.mktemp("routing")
    models = folder / "models"
    write_model(
        models,
        "accumulate",
        accumulator(),
        accumulator_config(max_batch_size=32, idle_us=30_000_000),
    )
    http_ports = [free_port(), free_port()]
    with (
        run_server(models, folder, "--http-port", str(http_ports[0])) as first,
        run_server(models, folder, "--http-port", str(http_ports[1])) as second,
    ):
        listen = (free_port(), free_port())
        scratch = folder / "nginx"
        scratch.mkdir()
        config = scratch / "nginx.conf"
        grpc_ports = [int(s.url.rsplit(":", 1)[1]) for s in (first, second)]
        config.write_text(proxy_config(grpc_ports, http_ports, listen, scratch / "nginx.pid"))
        assert NGINX is not None
        nginx = subprocess.Popen(
            [NGINX, "-c", str(config), "-p", str(scratch), "-g", "daemon off;"],
            stderr=subprocess.PIPE,
            text=True,
        )
        url = f"127.0.0.1:{listen[0]}"
        deadline = time.monotonic() + 20
        while not _live(url):
            assert nginx.poll() is None, nginx.stderr.read() if nginx.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.1)
        try:
            yield Replicas([first, second], url, f"http://127.0.0.1:{listen[1]}", nginx)
        finally:
            nginx.send_signal(signal.SIGQUIT)
            nginx.wait(timeout=10)


def _step(
    client: triton.InferenceServerClient, sequence_id: int, value: float, start: bool, end: bool
) -> float:
    tensor = triton.InferInput("INPUT", [1, 1], "FP32")
    tensor.set_data_from_numpy(np.array([[value]], np.float32))
    result = client.infer(
        "accumulate",
        [tensor],
        sequence_id=sequence_id,
        sequence_start=start,
        sequence_end=end,
        headers={"x-sequence-id": str(sequence_id)},
    )
    return float(result.as_numpy("OUTPUT")[0, 0])


def _count(server: RunningServer) -> int:
    stats = triton.InferenceServerClient(server.url).get_inference_statistics("accumulate")
    return stats.model_stats[0].inference_stats.success.count


def test_every_step_of_a_sequence_lands_on_one_replica(replicas: Replicas) -> None:
    """Sequences interleaved step by step through the proxy: each sum is its own (a step on
    the other replica would fail, as that one never saw the sequence start)."""
    client = triton.InferenceServerClient(replicas.proxy)
    before = [_count(s) for s in replicas.servers]
    ids = list(range(1001, 1025))
    sums = dict.fromkeys(ids, 0.0)
    for step in range(5):
        for sequence_id in ids:
            got = _step(client, sequence_id, sequence_id + step, step == 0, step == 4)
            sums[sequence_id] += sequence_id + step
            assert got == sums[sequence_id]
    after = [_count(s) for s in replicas.servers]
    served = [a - b for a, b in zip(after, before, strict=True)]
    assert sum(served) == 5 * len(ids)
    assert all(count >= 5 for count in served), served  # both replicas hold sequences


def test_the_sdk_session_routes_itself(replicas: Replicas) -> None:
    with Client(replicas.proxy) as client:
        for _ in range(6):
            with client.sequence("accumulate") as session:
                total = 0.0
                for value in (1.0, 2.0, 3.0):
                    out = session.send({"INPUT": np.array([[value]], np.float32)}, end=value == 3.0)
                    total += value
                    assert float(out["OUTPUT"][0, 0]) == total


def test_an_sdk_client_of_several_servers_keeps_each_sequence_on_one(replicas: Replicas) -> None:
    """No proxy: the client spreads calls over both servers, but a sequence's all go to the
    server its id hashes to."""
    before = [_count(s) for s in replicas.servers]
    with Client([s.url for s in replicas.servers]) as client:
        for _ in range(12):
            with client.sequence("accumulate") as session:
                for step, value in enumerate((1.0, 2.0, 3.0, 4.0)):
                    out = session.send({"INPUT": np.array([[value]], np.float32)}, end=step == 3)
                assert float(out["OUTPUT"][0, 0]) == 10.0
    served = [_count(s) - b for s, b in zip(replicas.servers, before, strict=True)]
    assert sum(served) == 48 and min(served) > 0, served


def test_http_sequences_route_by_the_same_header(replicas: Replicas) -> None:
    for sequence_id in range(7001, 7013):
        total = 0.0
        for step in range(3):
            body = {
                "inputs": [{"name": "INPUT", "datatype": "FP32", "shape": [1, 1], "data": [step]}],
                "parameters": {
                    "sequence_id": sequence_id,
                    "sequence_start": step == 0,
                    "sequence_end": step == 2,
                },
            }
            reply = requests.post(
                f"{replicas.http}/v2/models/accumulate/infer",
                json=body,
                headers={"x-sequence-id": str(sequence_id)},
                timeout=10,
            )
            assert reply.status_code == 200, reply.text
            total += step
            assert reply.json()["outputs"][0]["data"] == [total]


def test_a_replica_that_goes_away_ends_its_sequences_clearly(replicas: Replicas) -> None:
    """Last in the module: it stops a replica."""
    client = triton.InferenceServerClient(replicas.proxy)
    ids = list(range(5001, 5025))
    for sequence_id in ids:
        _step(client, sequence_id, 1.0, True, False)
    on_first = _count(replicas.servers[0])
    # Stopped as an orchestrator stops it (SIGTERM; a split server's processes all go).
    replicas.servers[0].process.send_signal(signal.SIGTERM)
    replicas.servers[0].process.wait(timeout=30)
    failed, kept = [], []
    for sequence_id in ids:
        try:
            assert _step(client, sequence_id, 1.0, False, True) == 2.0
            kept.append(sequence_id)
        except InferenceServerException as error:
            assert error.status() == "StatusCode.INVALID_ARGUMENT", error
            assert f"sequence {sequence_id} is not active" in error.message()
            failed.append(sequence_id)
    assert failed and kept and on_first > 0
    # A new sequence goes on, on the replica left.
    assert _step(client, 9001, 4.0, True, False) == 4.0
    assert _step(client, 9001, 1.0, False, True) == 5.0
