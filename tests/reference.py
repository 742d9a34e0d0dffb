"""In-process ONNX Runtime: the reference the server's answers must equal bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from deepserve.training.metrics import box_iou


def run_in_process(
    repository: Path, model: str, feeds: dict[str, np.ndarray], version: int = 1
) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(
        str(repository / model / str(version) / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def assert_bitwise_equal(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert actual.tobytes() == expected.tobytes()


def pair_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two x1 y1 x2 y2 boxes."""
    return float(box_iou(np.asarray(a, np.float32)[None], np.asarray(b, np.float32)[None])[0, 0])
