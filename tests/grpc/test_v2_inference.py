"""ModelInfer / ModelStreamInfer over the real server with tritonclient, checked against
in-process ONNX Runtime bit for bit."""

from __future__ import annotations

import queue
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2 as pb

from ..onnx_models import DIGIT_LABELS
from ..reference import assert_bitwise_equal, run_in_process


def _input(name: str, array: np.ndarray, datatype: str) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


@pytest.mark.parametrize("batch", range(1, 9))
def test_add_sub_every_batch_size_matches_onnxruntime(
    client: triton.InferenceServerClient, repository: Path, batch: int
) -> None:
    rng = np.random.default_rng(batch)
    a = rng.standard_normal((batch, 16), dtype=np.float32)
    b = rng.standard_normal((batch, 16), dtype=np.float32)
    result = client.infer("add_sub", [_input("INPUT0", a, "FP32"), _input("INPUT1", b, "FP32")])
    expected = run_in_process(repository, "add_sub", {"INPUT0": a, "INPUT1": b})
    assert result.get_response().model_name == "add_sub"
    assert result.get_response().model_version == "1"
    assert_bitwise_equal(result.as_numpy("OUTPUT0"), expected["OUTPUT0"])
    assert_bitwise_equal(result.as_numpy("OUTPUT1"), expected["OUTPUT1"])


def test_requested_outputs_subset_in_request_order(client: triton.InferenceServerClient) -> None:
    a = np.ones((2, 16), np.float32)
    b = np.full((2, 16), 3, np.float32)
    outputs = [triton.InferRequestedOutput("OUTPUT1"), triton.InferRequestedOutput("OUTPUT0")]
    response = client.infer(
        "add_sub", [_input("INPUT0", a, "FP32"), _input("INPUT1", b, "FP32")], outputs=outputs
    ).get_response()
    assert [o.name for o in response.outputs] == ["OUTPUT1", "OUTPUT0"]
    assert len(response.raw_output_contents) == 2
    only = client.infer(
        "add_sub",
        [_input("INPUT0", a, "FP32"), _input("INPUT1", b, "FP32")],
        outputs=[triton.InferRequestedOutput("OUTPUT1")],
    )
    assert [o.name for o in only.get_response().outputs] == ["OUTPUT1"]
    np.testing.assert_array_equal(only.as_numpy("OUTPUT1"), np.full((2, 16), -2, np.float32))


def test_typed_contents_are_accepted(stub, repository: Path) -> None:
    a = np.arange(32, dtype=np.float32).reshape(2, 16) / 7
    b = np.linspace(-1, 1, 32, dtype=np.float32).reshape(2, 16)
    request = pb.ModelInferRequest(model_name="add_sub", id="typed-1")
    for name, array in (("INPUT0", a), ("INPUT1", b)):
        tensor = request.inputs.add(name=name, datatype="FP32", shape=[2, 16])
        tensor.contents.fp32_contents.extend(array.reshape(-1).tolist())
    response = stub.ModelInfer(request)
    assert response.id == "typed-1"
    # Outputs always come back raw, in order.
    assert [o.name for o in response.outputs] == ["OUTPUT0", "OUTPUT1"]
    got = np.frombuffer(response.raw_output_contents[0], np.float32).reshape(2, 16)
    expected = run_in_process(repository, "add_sub", {"INPUT0": a, "INPUT1": b})
    assert_bitwise_equal(got, expected["OUTPUT0"])


def test_uint8_classifier_matches_onnxruntime(
    client: triton.InferenceServerClient, repository: Path
) -> None:
    image = np.random.default_rng(7).integers(0, 256, (5, 8), dtype=np.uint8)
    result = client.infer("classifier", [_input("image", image, "UINT8")])
    expected = run_in_process(repository, "classifier", {"image": image})["logits"]
    assert_bitwise_equal(result.as_numpy("logits"), expected)


def test_classification_extension_gives_top_k_with_labels(
    client: triton.InferenceServerClient, repository: Path
) -> None:
    image = np.random.default_rng(11).integers(0, 256, (3, 8), dtype=np.uint8)
    result = client.infer(
        "classifier",
        [_input("image", image, "UINT8")],
        outputs=[triton.InferRequestedOutput("logits", class_count=3)],
    )
    top = result.as_numpy("logits")
    assert top.shape == (3, 3)
    logits = run_in_process(repository, "classifier", {"image": image})["logits"]
    for row in range(3):
        best = np.argsort(-logits[row], kind="stable")[:3]
        entries = [entry.decode().split(":") for entry in top[row]]
        assert [int(index) for _, index, _ in entries] == best.tolist()
        assert [label for _, _, label in entries] == [DIGIT_LABELS[i] for i in best]
        np.testing.assert_allclose(
            [float(score) for score, _, _ in entries], logits[row, best], atol=1e-6
        )


def test_classification_without_labels_is_score_and_index(
    client: triton.InferenceServerClient,
) -> None:
    x = np.array([[5, -9, 2]], dtype=np.int32)
    result = client.infer(
        "negate",
        [_input("x", x, "INT32")],
        outputs=[triton.InferRequestedOutput("y", class_count=2)],
    )
    assert [e.decode() for e in result.as_numpy("y")[0]] == ["9.000000:1", "-2.000000:2"]


def test_bytes_tensors_round_trip(client: triton.InferenceServerClient) -> None:
    text = np.array([b"hello", "wörld".encode(), b""], dtype=object)
    result = client.infer("strings", [_input("text", text, "BYTES")])
    assert result.as_numpy("echo").tolist() == text.tolist()


def test_auto_configured_model_serves(client: triton.InferenceServerClient) -> None:
    x = np.arange(12, dtype=np.int32).reshape(4, 3)
    result = client.infer("negate", [_input("x", x, "INT32")])
    np.testing.assert_array_equal(result.as_numpy("y"), -x)


def test_version_policy_and_explicit_versions(client: triton.InferenceServerClient) -> None:
    x = np.zeros((1, 4), np.float32)
    latest = client.infer("versioned", [_input("x", x, "FP32")])
    assert latest.get_response().model_version == "3"
    np.testing.assert_array_equal(latest.as_numpy("y"), x + 3)
    first = client.infer("versioned", [_input("x", x, "FP32")], model_version="1")
    np.testing.assert_array_equal(first.as_numpy("y"), x + 1)
    assert client.is_model_ready("versioned", "1") and client.is_model_ready("versioned", "3")
    assert not client.is_model_ready("versioned", "2")  # not in the specific policy


def test_stream_infer_answers_in_order_and_reports_errors(server) -> None:
    answers: queue.Queue = queue.Queue()
    stream_client = triton.InferenceServerClient(server.url)
    stream_client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for i in range(6):
            x = np.full((1, 3), i, np.int32)
            stream_client.async_stream_infer("negate", [_input("x", x, "INT32")], request_id=str(i))
        bad = _input("x", np.zeros((1, 4), np.int32), "INT32")  # wrong shape
        stream_client.async_stream_infer("negate", [bad], request_id="bad")
        x = np.full((1, 3), 9, np.int32)
        stream_client.async_stream_infer("negate", [_input("x", x, "INT32")], request_id="after")
        got = [answers.get(timeout=30) for _ in range(8)]
    finally:
        stream_client.stop_stream()
        stream_client.close()
    for i, (result, error) in enumerate(got[:6]):
        assert error is None
        assert result.get_response().id == str(i)
        np.testing.assert_array_equal(result.as_numpy("y"), np.full((1, 3), -i, np.int32))
    assert got[6][0] is None and "expected shape [-1, 3], got [1, 4]" in str(got[6][1])
    assert got[7][1] is None and got[7][0].get_response().id == "after"


def test_statistics_count_what_was_sent(server) -> None:
    fresh = triton.InferenceServerClient(server.url)
    before = fresh.get_inference_statistics("negate", "1").model_stats[0]
    sizes = [1, 4, 2, 7]
    for size in sizes:
        fresh.infer("negate", [_input("x", np.ones((size, 3), np.int32), "INT32")])
    with pytest.raises(triton.InferenceServerException):
        fresh.infer("negate", [_input("x", np.ones((2, 5), np.int32), "INT32")])
    after = fresh.get_inference_statistics("negate", "1").model_stats[0]
    fresh.close()
    assert after.name == "negate" and after.version == "1"
    assert after.inference_count - before.inference_count == sum(sizes)
    assert after.execution_count - before.execution_count == len(sizes)
    stats, old = after.inference_stats, before.inference_stats
    assert stats.success.count - old.success.count == len(sizes)
    assert stats.fail.count - old.fail.count == 1
    for field in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert getattr(stats, field).count - getattr(old, field).count == len(sizes)
        assert getattr(stats, field).ns > getattr(old, field).ns
    assert stats.success.ns - old.success.ns >= stats.compute_infer.ns - old.compute_infer.ns
    by_size = {b.batch_size: b.compute_infer.count for b in after.batch_stats}
    for size in sizes:
        assert by_size[size] >= 1
    assert after.last_inference > 0
