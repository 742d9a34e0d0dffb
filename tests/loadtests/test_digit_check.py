"""The check GenerateUser runs on each answer: a wrong answer fails, a rare good one passes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from loadtests.digit_check import check_digits

GENERATOR = Path(__file__).resolve().parents[2] / "models" / "mnist_cgan" / "1" / "model.onnx"


def _generated(digit: int, seed: int) -> np.ndarray:
    session = ort.InferenceSession(str(GENERATOR), providers=["CPUExecutionProvider"])
    inputs = {
        "class": np.full((16, 1), digit, np.int64),
        "seed": np.arange(seed, seed + 16, dtype=np.int64)[:, None],
    }
    return session.run(None, inputs)[0][..., 0]


def test_generated_digits_pass_and_thin_ones_too() -> None:
    digits = _generated(1, 12345)
    check_digits(digits)
    thin = np.zeros_like(digits)
    thin[:, 4:15, 14] = 255  # a "1" of 11 pixels, as thin as the generator's thinnest
    check_digits(thin)


@pytest.mark.parametrize("fill", [0, 255])
def test_blank_or_saturated_digits_fail(fill: int) -> None:
    digits = _generated(3, 7)
    digits[5] = fill
    with pytest.raises(ValueError, match="without a digit's ink"):
        check_digits(digits)


def test_wrong_shape_fails() -> None:
    with pytest.raises(ValueError, match="expected 16 digits of 28x28"):
        check_digits(np.zeros((8, 28, 28), np.uint8))
