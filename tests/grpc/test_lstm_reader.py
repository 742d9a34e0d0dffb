"""The bundled LSTM digit reader served as a sequence model: tritonclient streams real held-out
digits row by row (one row, or a few, a request), the server keeps each sequence's LSTM
state, and after the last row the answer is the whole image's."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton

from ..mnist_sample import digits
from ..server_process import RunningServer, run_server

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "lstm_reader"
DIGITS = 40


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("lstm")
    shutil.copytree(MODEL, folder / "models" / "lstm_reader")
    with run_server(folder / "models", folder) as running:
        yield running


def whole_image_logits(images: np.ndarray) -> np.ndarray:
    """The exported graph reading every row at once from a zero state, in process."""
    session = ort.InferenceSession(
        str(MODEL / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    state = np.zeros((len(images), 2, 128), np.float32)
    return session.run(["logits"], {"rows": images, "h_in": state, "c_in": state})[0]


def read(client: triton.InferenceServerClient, sequence_id: int, image: np.ndarray, rows: int):
    """One digit, `rows` rows a request; the reader's logits after each request."""
    beliefs = []
    for first in range(0, 28, rows):
        tensor = triton.InferInput("rows", [1, rows, 28], "UINT8")
        tensor.set_data_from_numpy(image[None, first : first + rows])
        result = client.infer(
            "lstm_reader",
            [tensor],
            sequence_id=sequence_id,
            sequence_start=first == 0,
            sequence_end=first + rows >= 28,
        )
        beliefs.append(result.as_numpy("logits")[0])
    return np.stack(beliefs)


@pytest.mark.parametrize("rows", [1, 4])
def test_streamed_digits_end_on_the_whole_image_answer(server: RunningServer, rows: int):
    images, labels = digits()
    images, labels = images[:DIGITS], labels[:DIGITS]
    expected = whole_image_logits(images)
    client = triton.InferenceServerClient(server.url)
    # Several digits read at once, interleaved: each sequence's state is its own.
    with ThreadPoolExecutor(8) as pool:
        beliefs = list(
            pool.map(lambda i: read(client, 100 + i + rows * 1000, images[i], rows), range(DIGITS))
        )
    client.close()
    final = np.stack([b[-1] for b in beliefs])
    np.testing.assert_allclose(final, expected, atol=1e-5)
    assert (final.argmax(1) == labels).mean() >= 0.95
    # Early rows say little; the belief sharpens as rows arrive.
    first_quarter = np.stack([b[len(b) // 4] for b in beliefs]).argmax(1)
    assert (first_quarter == labels).mean() < (final.argmax(1) == labels).mean()
