"""The Prometheus endpoint counts what the server did."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import numpy as np
import tritonclient.grpc as triton

from ..onnx_models import int_negate, write_model
from ..server_process import free_port, run_server


def _scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("deepserve_"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_metrics_endpoint(tmp_path: Path) -> None:
    write_model(tmp_path / "models", "negate", int_negate())
    port = free_port()
    with run_server(tmp_path / "models", tmp_path, "--metrics-port", str(port)) as server:
        client = triton.InferenceServerClient(server.url)
        for size in (1, 3):
            tensor = triton.InferInput("x", [size, 3], "INT32")
            tensor.set_data_from_numpy(np.ones((size, 3), np.int32))
            client.infer("negate", [tensor])
        metrics = _scrape(port)
    key = '{model="negate",version="1"}'
    assert metrics[f"deepserve_inference_request_success_total{key}"] == 2
    assert metrics[f"deepserve_inference_inference_count_total{key}"] == 4
    assert metrics[f"deepserve_inference_execution_count_total{key}"] == 2
    assert metrics[f"deepserve_compute_infer_duration_us_total{key}"] > 0
    assert metrics[f"deepserve_model_ready{key}"] == 1
    assert metrics["deepserve_server_ready"] == 1
