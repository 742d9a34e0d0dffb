"""What an operator sees: histograms and counters after known traffic, request ids in trailing
metadata, error messages and JSON log lines, access and slow-request logs."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from deepserve.v1 import vision_pb2 as vpb
from deepserve.v1 import vision_pb2_grpc as vpb_grpc

from ..onnx_models import (
    CLASSIFIER_CONFIG,
    DIGIT_LABELS,
    int_negate,
    linear_classifier,
    write_model,
)
from ..server_process import RunningServer, free_port, run_server

Samples = dict[tuple[str, frozenset], float]


def scrape(port: int) -> Samples:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _negate_request(rows: int, request_id: str | None = None) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="negate")
    request.inputs.add(name="x", datatype="INT32", shape=[rows, 3])
    request.raw_input_contents.append(np.ones((rows, 3), np.int32).tobytes())
    return request


@pytest.fixture(scope="module")
def observed_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningServer, int]]:
    root = tmp_path_factory.mktemp("observed")
    repo = root / "models"
    write_model(repo, "negate", int_negate())
    labels = {"labels.txt": "\n".join(DIGIT_LABELS) + "\n"}
    write_model(repo, "classifier", linear_classifier(), CLASSIFIER_CONFIG, files=labels)
    metrics_port = free_port()
    args = (
        "--metrics-port", str(metrics_port), "--log-format", "json",
        "--access-log-ratio", "1", "--slow-request-ms", "0.000001",
    )  # fmt: skip
    with run_server(repo, root, *args) as server:
        yield server, metrics_port


def test_histograms_and_counters_follow_known_traffic(observed_server) -> None:
    server, port = observed_server
    before = scrape(port)
    with grpc.insecure_channel(server.url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for rows in (1, 1, 3, 5):  # one at a time: each runs in a batch of its own size
            stub.ModelInfer(_negate_request(rows))
        wrong = _negate_request(2)
        wrong.raw_input_contents[0] = b"short"
        for request in (wrong, pb.ModelInferRequest(model_name="made-up-name")):
            with pytest.raises(grpc.RpcError):
                stub.ModelInfer(request)
        vision = vpb_grpc.VisionStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            vision.Classify(vpb.ClassifyRequest(model="classifier", images=[]))
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    after = scrape(port)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    version = {"model": "negate", "version": "1"}
    assert delta("deepserve_request_duration_seconds_count", **version) == 4
    assert delta("deepserve_queue_duration_seconds_count", **version) == 4
    assert delta("deepserve_batch_compute_duration_seconds_count", **version) == 4
    assert delta("deepserve_request_batch_size_count", **version) == 4
    assert delta("deepserve_request_batch_size_sum", **version) == 10
    # Buckets are cumulative: two requests ran in batches of 1, all four in batches up to 8.
    assert delta("deepserve_request_batch_size_bucket", le="1.0", **version) == 2
    assert delta("deepserve_request_batch_size_bucket", le="4.0", **version) == 3
    assert delta("deepserve_request_batch_size_bucket", le="8.0", **version) == 4
    assert 0 < delta("deepserve_request_duration_seconds_sum", **version) < 4
    assert delta("deepserve_request_duration_seconds_bucket", le="10.0", **version) == 4
    assert delta("deepserve_requests_total", rpc="ModelInfer", model="negate", code="OK") == 4
    assert (
        delta("deepserve_requests_total", rpc="ModelInfer", model="negate", code="INVALID_ARGUMENT")
        == 1
    )
    # A name a caller made up is not a label value: it counts under model "".
    assert delta("deepserve_requests_total", rpc="ModelInfer", model="", code="NOT_FOUND") == 1
    assert not any("made-up-name" in str(key) for key in after)
    assert (
        delta("deepserve_requests_total", rpc="Classify", model="", code="FAILED_PRECONDITION") == 1
    )
    # The Triton-style counters stay.
    assert delta("deepserve_inference_request_success_total", **version) == 4
    assert delta("deepserve_inference_inference_count_total", **version) == 10


def _log_lines(server: RunningServer) -> list[dict]:
    lines = []
    for line in server.log().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_request_ids_are_echoed_logged_and_quoted_in_errors(observed_server) -> None:
    server, _ = observed_server
    with grpc.insecure_channel(server.url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        _, call = stub.ModelInfer.with_call(
            _negate_request(2), metadata=(("x-request-id", "trace-me-42"),)
        )
        assert ("x-request-id", "trace-me-42") in call.trailing_metadata()
        _, call = stub.ModelInfer.with_call(_negate_request(1))
        made = dict(call.trailing_metadata())["x-request-id"]
        assert len(made) == 32
        wrong = _negate_request(2)
        wrong.raw_input_contents[0] = b"short"
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(wrong, metadata=(("x-request-id", "bad-input-7"),))
        assert caught.value.details().endswith("(request id bad-input-7)")
        assert ("x-request-id", "bad-input-7") in caught.value.trailing_metadata()
        # An id that is not a sensible token is replaced, not logged as it came.
        _, call = stub.ModelInfer.with_call(
            _negate_request(1), metadata=(("x-request-id", "a b <forged log line>"),)
        )
        assert dict(call.trailing_metadata())["x-request-id"] != "a b <forged log line>"
    lines = _log_lines(server)
    assert lines, "the server logs JSON"
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    access = [line for line in lines if line["logger"] == "deepserve.access"]
    mine = next(line for line in access if line.get("request_id") == "trace-me-42")
    assert mine["rpc"] == "ModelInfer" and mine["model"] == "negate" and mine["code"] == "OK"
    assert mine["batch_size"] == 2 and mine["duration_ms"] > 0
    assert {"queue_ms", "compute_ms", "version"} <= set(mine)
    failed = next(line for line in access if line.get("request_id") == "bad-input-7")
    assert failed["code"] == "INVALID_ARGUMENT"
    slow = [line for line in lines if line["logger"] == "deepserve.slow"]
    assert any(line.get("request_id") == "trace-me-42" for line in slow)
    assert any(line.get("request_id") == made for line in access)


def test_text_logs_carry_the_request_id(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    write_model(repo, "negate", int_negate())
    with (
        run_server(repo, tmp_path, "--slow-request-ms", "0.000001") as server,
        grpc.insecure_channel(server.url) as channel,
    ):
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
            _negate_request(1), metadata=(("x-request-id", "text-log-1"),)
        )
    line = next(line for line in server.log().splitlines() if "slow request" in line)
    assert "deepserve.slow" in line and line.endswith("[request text-log-1]")
    assert "queue" in line and "compute" in line
