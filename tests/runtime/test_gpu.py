"""On a GPU host (`pytest -m cuda`; skipped elsewhere): the server runs the bundled models on
CUDA through the bound host-device path and answers as ONNX Runtime does on the CPU."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton

from ..mnist_sample import digits
from ..reference import run_in_process
from ..server_process import RunningServer, run_server

MODELS = Path(__file__).resolve().parents[2] / "models"

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def gpu_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    logs = tmp_path_factory.mktemp("gpu")
    with run_server(MODELS, logs, "--device", "cuda", timeout=300) as server:
        yield server


def test_models_run_on_cuda_through_page_locked_buffers(gpu_server: RunningServer) -> None:
    log = gpu_server.log()
    assert "GPU host:" in log
    assert "'mnist' version 1: execution providers ['CUDAExecutionProvider'" in log
    assert "IOBinding, batches gathered into page-locked host buffers" in log


def test_gpu_answers_match_the_cpu(gpu_server: RunningServer) -> None:
    images = digits()[0][:200, ..., None]
    client = triton.InferenceServerClient(gpu_server.url)
    tensor = triton.InferInput("image", list(images.shape), "UINT8")
    tensor.set_data_from_numpy(images)
    served = client.infer("mnist", [tensor]).as_numpy("logits")
    expected = run_in_process(MODELS, "mnist", {"image": images})["logits"]
    assert np.mean(served.argmax(1) == expected.argmax(1)) >= 0.995
    np.testing.assert_allclose(served, expected, atol=1e-2)
