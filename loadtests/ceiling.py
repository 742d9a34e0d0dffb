"""The compute ceiling: in-process ONNX Runtime on the same model, at the best batch size."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from .models import read_config


@dataclass(frozen=True)
class Ceiling:
    best_batch: int
    items_per_s: float
    by_batch: dict[int, float]
    ready_s: float = 0.0
    """From creating the session to the end of a first run at the largest batch: with
    TensorRT, its engine build (or its read from the cache)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "best_batch": self.best_batch,
            "items_per_s": self.items_per_s,
            "by_batch": {str(k): v for k, v in self.by_batch.items()},
        }


def providers_for(device: str) -> list:
    if device == "cuda":
        return [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def served_providers(model_dir: Path, device: str, max_batch_size: int, name: str) -> Any:
    """The providers the server picks for this model (TensorRT with its precision, profile and
    engine cache when the config asks for it), so the ceiling runs what the server runs. `name`:
    the served model's, so both find one TensorRT engine in the cache and it is built once."""
    from deepserve.server.runtime import sessions as runtime
    from deepserve.server.settings import default_engine_cache

    config = read_config(model_dir)
    config.name = name
    config.max_batch_size = max_batch_size
    del config.dynamic_batching.preferred_batch_size[:]
    choice = runtime.choose_providers(
        config,
        device,
        model_file=model_dir / "1" / "model.onnx",
        engine_cache=default_engine_cache(),
    )
    return choice  # a ProviderChoice: .providers for the session, .names for the report


def compute_ceiling(
    onnx_file: Path,
    inputs: np.ndarray,
    batches: list[int],
    device: str = "cpu",
    seconds_per_batch: float = 1.5,
    threads: int = 0,
    providers: list | None = None,
) -> Ceiling:
    """Items per second of session.run at each batch size (inputs cycled), best one first.
    On CUDA, inputs are bound once with IOBinding so the loop times the model, as a server that
    keeps its batch on the device would see it. `providers`: instead of `device`'s plain ones."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    started = time.perf_counter()
    session = ort.InferenceSession(
        str(onnx_file), options, providers=providers or providers_for(device)
    )
    name = session.get_inputs()[0].name
    largest = max(batches)
    session.run(None, {name: np.ascontiguousarray(inputs[np.arange(largest) % len(inputs)])})
    ready_s = time.perf_counter() - started
    by_batch: dict[int, float] = {}
    for batch in batches:
        index = np.arange(batch) % len(inputs)
        feed = np.ascontiguousarray(inputs[index])
        run = _runner(session, name, feed, device)
        run()  # warm-up: first runs allocate
        runs = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds_per_batch:
            run()
            runs += 1
        by_batch[batch] = runs * batch / (time.perf_counter() - started)
    best = max(by_batch, key=by_batch.__getitem__)
    return Ceiling(best, by_batch[best], by_batch, ready_s)


def _runner(session: ort.InferenceSession, name: str, feed: np.ndarray, device: str):
    if device != "cuda":
        return lambda: session.run(None, {name: feed})
    binding = session.io_binding()
    binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(feed, "cuda", 0))
    for output in session.get_outputs():
        binding.bind_output(output.name, "cuda")

    def run() -> None:
        session.run_with_iobinding(binding)

    return run
