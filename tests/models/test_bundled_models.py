"""The committed model repository (what `make serve` serves), on real MNIST digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton

from ..mnist_sample import digits
from ..reference import assert_bitwise_equal, run_in_process
from ..server_process import RunningServer

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"


def _digits() -> tuple[np.ndarray, np.ndarray]:
    return digits()


@pytest.fixture(scope="module")
def bundled(bundled_server: RunningServer) -> RunningServer:
    return bundled_server


def test_bundled_repository_is_ready(bundled: RunningServer) -> None:
    client = triton.InferenceServerClient(bundled.url)
    assert client.is_server_ready()
    index = client.get_model_repository_index().models
    names = {m.name for m in index if m.state == "READY"}
    assert {"mnist", "cifar10_resnet20"} <= names


def test_mnist_classifies_real_digits_like_onnxruntime(bundled: RunningServer) -> None:
    images, labels = _digits()
    client = triton.InferenceServerClient(bundled.url)
    predictions = []
    for start in range(0, len(images), 50):
        batch = images[start : start + 50, :, :, None].copy()
        tensor = triton.InferInput("image", list(batch.shape), "UINT8")
        tensor.set_data_from_numpy(batch)
        logits = client.infer("mnist", [tensor]).as_numpy("logits")
        expected = run_in_process(MODELS, "mnist", {"image": batch})["logits"]
        assert_bitwise_equal(logits, expected)
        predictions.append(logits.argmax(1))
    accuracy = float((np.concatenate(predictions) == labels).mean())
    assert accuracy >= 0.98, accuracy


def test_mnist_classification_extension_names_the_digit(bundled: RunningServer) -> None:
    images, labels = _digits()
    client = triton.InferenceServerClient(bundled.url)
    batch = images[:8, :, :, None].copy()
    tensor = triton.InferInput("image", list(batch.shape), "UINT8")
    tensor.set_data_from_numpy(batch)
    top = client.infer(
        "mnist", [tensor], outputs=[triton.InferRequestedOutput("logits", class_count=1)]
    ).as_numpy("logits")
    named = [int(entry[0].decode().split(":")[2]) for entry in top]
    assert np.mean(np.array(named) == labels[:8]) >= 7 / 8


def test_cifar10_resnet20_serves(bundled: RunningServer) -> None:
    client = triton.InferenceServerClient(bundled.url)
    image = np.random.default_rng(3).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    tensor = triton.InferInput("image", list(image.shape), "UINT8")
    tensor.set_data_from_numpy(image)
    logits = client.infer("cifar10_resnet20", [tensor]).as_numpy("logits")
    expected = run_in_process(MODELS, "cifar10_resnet20", {"image": image})["logits"]
    assert_bitwise_equal(logits, expected)
