"""The bundled conditional GAN served: digits of the class asked for (read so by the served
classifier), the same seed giving the same digit, exactly the graph's images run in process;
class ids and seeds out of range refused by the config's input_bounds, naming the element."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton
from PIL import Image
from tritonclient.utils import InferenceServerException

from deepserve import Client, DeepserveError, InvalidInputError

from ..server_process import RunningServer

MODEL = Path(__file__).resolve().parents[2] / "models" / "mnist_cgan"


def _in_process(digit: int, seeds: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(MODEL / "1" / "model.onnx"))
    feeds = {"class": np.full((len(seeds), 1), digit, np.int64), "seed": seeds[:, None]}
    return session.run(["image"], feeds)[0][..., 0]


def test_generated_digits_are_of_the_class_asked_for(bundled_server: RunningServer) -> None:
    agreed = 0
    with Client(bundled_server.url) as client:
        for digit in range(10):
            digits = client.generate(digit=digit, n=20, seed=500)
            assert digits.shape == (20, 28, 28) and digits.dtype == np.uint8
            np.testing.assert_array_equal(digits, _in_process(digit, np.arange(500, 520)))
            read = client.classify(list(digits[..., None]), model="mnist")
            agreed += sum(result.label == str(digit) for result in read)
    assert agreed / 200 >= 0.9  # the card's figure is over 1,000; here seeds it never saw


def test_a_seed_names_one_digit(bundled_server: RunningServer) -> None:
    with Client(bundled_server.url) as client:
        first = client.generate(digit=3, n=4, seed=7)
        again = client.generate(digit=3, n=4, seed=7)
        shifted = client.generate(digit=3, n=3, seed=8)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first[1:], shifted)  # image i is seed + i's
    assert len({digit.tobytes() for digit in first}) == 4  # each seed its own digit


def test_tritonclient_and_the_bounds(bundled_server: RunningServer) -> None:
    client = triton.InferenceServerClient(bundled_server.url)

    def infer(classes: list[int], seeds: list[int]) -> np.ndarray:
        given = [triton.InferInput("class", [len(classes), 1], "INT64"),
                 triton.InferInput("seed", [len(seeds), 1], "INT64")]  # fmt: skip
        given[0].set_data_from_numpy(np.array(classes, np.int64)[:, None])
        given[1].set_data_from_numpy(np.array(seeds, np.int64)[:, None])
        return client.infer("mnist_cgan", given).as_numpy("image")

    assert infer([1, 2], [0, 0]).shape == (2, 28, 28, 1)
    for classes, seeds, message in (
        ([1, 10], [0, 0], "input 'class': element [1, 0] is 10, outside 0..9"),
        ([-1], [0], "input 'class': element [0, 0] is -1, outside 0..9"),
        ([1], [-5], "input 'seed': element [0, 0] is -5, outside 0..2147483645"),
    ):
        with pytest.raises(InferenceServerException) as refused:
            infer(classes, seeds)
        assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert message in refused.value.message()
        assert "input_bounds" in refused.value.message()
    with Client(bundled_server.url) as sdk:
        with pytest.raises(InvalidInputError, match=r"outside 0\.\.9"):
            sdk.generate(digit=12)
        with pytest.raises(DeepserveError, match="n is the number of images, 1 to 64; got 65"):
            sdk.generate(digit=1, n=65)
        assert sdk.generate(digit=1).shape == (1, 28, 28)  # still serving


def test_generate_command_draws_a_grid(bundled_server: RunningServer, tmp_path: Path) -> None:
    out = tmp_path / "sevens.png"
    command = [
        sys.executable, "-m", "deepserve.cli", "generate", "--digit", "7", "-n", "12",
        "--seed", "3", "--columns", "6", "--out", str(out), "--url", bundled_server.url,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote {out}: 12 digits '7', seeds 3..14"
    with Image.open(out) as picture:
        sheet = np.asarray(picture)
    assert sheet.shape == (2 * 28 * 4, 6 * 28 * 4)
    first = _in_process(7, np.array([3]))[0]
    np.testing.assert_array_equal(sheet[: 28 * 4 : 4, : 28 * 4 : 4], first)
