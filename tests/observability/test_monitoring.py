"""The dashboard and the alert rules against reality: the rules pass promtool, every metric a
panel or rule names is in a live scrape of the server, and a real Prometheus scraping a real
deepserve evaluates every panel query and alert expression."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import yaml
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from deepserve import generation

from ..generator_models import write_echo
from ..onnx_models import int_negate, write_model
from ..server_process import RunningServer, free_port, run_server
from .test_observability import scrape

MONITORING = Path(__file__).resolve().parents[2] / "docker" / "monitoring"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "deepserve.json"
ALERTS = MONITORING / "alerts.yml"
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None or PROMTOOL is None,
    reason="needs Prometheus and promtool: `apt-get install prometheus` (make test installs "
    "them where apt-get works)",
)
# Reported by Prometheus itself, or only on hosts with NVIDIA GPUs.
NOT_FROM_A_CPU_SCRAPE = {
    "up",
    "deepserve_gpu_utilization_ratio",
    "deepserve_gpu_memory_used_bytes",
    "deepserve_gpu_memory_total_bytes",
}


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL with the dashboard's variables filled in) for every target."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"].replace("$__rate_interval", "10s").replace("$model", ".*"))
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


def alert_rules() -> dict[str, str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(deepserve_[a-z0-9_]+|up)\b(?=\s*[{\[)/ ]|$)", expr))


def _traffic(url: str) -> None:
    """Answers, a caller's mistake and a full-queue-free mix, on two models."""
    with grpc.insecure_channel(url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for rows in (1, 2, 3, 4):
            request = pb.ModelInferRequest(model_name="negate")
            request.inputs.add(name="x", datatype="INT32", shape=[rows, 3])
            request.raw_input_contents.append(np.ones((rows, 3), np.int32).tobytes())
            stub.ModelInfer(request)
        with pytest.raises(grpc.RpcError):
            stub.ModelInfer(pb.ModelInferRequest(model_name="negate"))
        # a text generator's answer, for its time to first token
        responses = stub.ModelStreamInfer(iter([generation.request("echo", "hi", True, None)]))
        assert [r.error_message for r in responses] == ["", "", ""]  # h, i, the end


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, int]]:
    """A server with one healthy model and one that cannot load, its metrics on a free port."""
    root = tmp_path_factory.mktemp("monitored")
    repo = root / "models"
    write_model(repo, "negate", int_negate())
    write_model(repo, "broken", b"not an onnx file")
    write_echo(repo, "echo")
    port = free_port()
    with run_server(
        repo, root, "--metrics-port", str(port), "--no-strict-readiness", wait_ready=True
    ) as server:
        _traffic(server.url)
        yield server, port


@needs_prometheus
def test_alert_rules_pass_promtool() -> None:
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(ALERTS)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout
    config = subprocess.run(
        [PROMTOOL, "check", "config", str(MONITORING / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert config.returncode == 0, config.stdout + config.stderr


def test_every_metric_a_panel_or_rule_names_is_scraped(monitored) -> None:
    _, port = monitored
    scraped = {name for name, _ in scrape(port)}
    named = {n for _, q in panel_queries() for n in metric_names(q)}
    named |= {n for expr in alert_rules().values() for n in metric_names(expr)}
    assert len(named) >= 12
    missing = sorted(named - scraped - NOT_FROM_A_CPU_SCRAPE)
    assert not missing, f"named by the dashboard or alerts but not scraped: {missing}"


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> dict:
        address = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(address, timeout=10) as response:
            return json.loads(response.read())

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as response:
            return json.loads(response.read())


@pytest.fixture(scope="module")
def prometheus(monitored, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    if PROMETHEUS is None:
        pytest.skip("needs Prometheus: `apt-get install prometheus`")
    server, metrics_port = monitored
    root = tmp_path_factory.mktemp("prometheus")
    shutil.copy(ALERTS, root / "alerts.yml")
    (root / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": ["alerts.yml"],
                "scrape_configs": [
                    {
                        "job_name": "deepserve",
                        "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}],
                    }
                ],
            }
        )
    )
    port = free_port()
    log = (root / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = Prometheus(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 60
        while True:  # ready, and two scrapes apart with traffic between them
            assert process.poll() is None, (root / "prometheus.log").read_text()
            assert time.monotonic() < deadline, (root / "prometheus.log").read_text()
            try:
                samples = client.query("count_over_time(deepserve_server_ready[1m])")
                if (
                    samples["data"]["result"]
                    and float(samples["data"]["result"][0]["value"][1]) >= 3
                ):
                    break
            except OSError:
                pass
            _traffic(server.url)
            time.sleep(0.5)
        _traffic(server.url)
        time.sleep(2.5)
        yield client
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@needs_prometheus
def test_every_panel_query_runs_in_prometheus(prometheus: Prometheus) -> None:
    empty = []
    for title, expr in panel_queries():
        answer = prometheus.query(expr)
        assert answer["status"] == "success", (title, expr, answer)
        if not answer["data"]["result"]:
            empty.append(title)
    # Everything but the GPU panel has data from a CPU server with traffic.
    assert set(empty) <= {"GPU utilisation and memory"}, empty


@needs_prometheus
def test_every_alert_expression_evaluates(prometheus: Prometheus) -> None:
    results = {}
    for name, expr in alert_rules().items():
        answer = prometheus.query(expr)
        assert answer["status"] == "success", (name, answer)
        results[name] = answer["data"]["result"]
    # The model that cannot load is what DeepserveModelNotReady reports; the rest is quiet.
    assert [r["metric"]["model"] for r in results["DeepserveModelNotReady"]] == ["broken"]
    assert not results["DeepserveLatencyP99AboveSLO"]
    assert not results["DeepserveFailureRatioHigh"]  # a caller's mistake is not a failure
    assert not results["DeepserveDown"]
    rules = prometheus.get("/api/v1/rules")["data"]["groups"][0]["rules"]
    assert {rule["name"] for rule in rules} == set(results)
    assert all(rule["health"] == "ok" for rule in rules), rules
