"""The files an exported model leaves beside it (its card and report) and the ONNX Runtime
measures of it on the CPU: nothing here needs torch, so the FP16 tool runs where only ONNX and
ONNX Runtime are installed."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort


def write_model_card(model_dir: Path, title: str, sections: dict[str, str]) -> Path:
    """README.md beside the model: what it is, data, command, metrics, parity, size, speed."""
    body = [f"# {title}", ""]
    for heading, text in sections.items():
        body += [f"## {heading}", "", text.strip(), ""]
    path = model_dir / "README.md"
    path.write_text("\n".join(body))
    return path


def write_report(model_dir: Path, report: dict) -> None:
    """training_report.json beside the model: the figures its card states, machine-readable."""
    (model_dir / "training_report.json").write_text(json.dumps(report, indent=2) + "\n")


def onnx_size_mb(path: Path) -> float:
    return path.stat().st_size / 1e6


def size_and_speed(path: Path, latency: dict[int, float], decimals: int = 2, at: str = "") -> str:
    """The model card's size and CPU latency line."""
    return (
        f"{onnx_size_mb(path):.{decimals}f} MB. CPU latency{at} (ms per run, median): "
        + ", ".join(f"batch {b}: {ms:.{decimals}f}" for b, ms in latency.items())
    )


def cpu_session(path: Path) -> ort.InferenceSession:
    """An ONNX Runtime session on the CPU: where every export figure (metrics, parity, speed) is
    measured, whatever the training device."""
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def cpu_latency_ms(
    path: Path, example: np.ndarray, batches: Sequence[int], runs: int = 20
) -> dict[int, float]:
    """Median ms per run of ONNX Runtime on the CPU at each batch size (inputs cycled)."""
    session = cpu_session(path)
    name = session.get_inputs()[0].name
    result: dict[int, float] = {}
    for batch in batches:
        feed = np.ascontiguousarray(example[np.arange(batch) % len(example)])
        session.run(None, {name: feed})
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            session.run(None, {name: feed})
            times.append((time.perf_counter() - start) * 1e3)
        result[batch] = float(np.median(times))
    return result
