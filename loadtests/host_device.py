"""How a batch reaches the model, measured on and off: the server's own instances (plain
concatenate + run; gathered into host buffers with IOBinding, pageable or page-locked; CUDA
graphs per bucket) run batches made of one-image requests, in-process, at each batch size.

    python -m loadtests.host_device --model resnet50 --model-repository models --device cuda \
        --out docs/benchmarks/host-device
    python -m loadtests.host_device --model mnist --device cpu --out /tmp/host-device

Prints images/s per path and batch size (median of timed runs), writes JSON and a PNG.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tritonclient.grpc import model_config_pb2 as mc

from deepserve.server.batching.instance import (
    BoundInstance,
    GraphInstance,
    Instance,
    PlainInstance,
    graph_buckets,
)
from deepserve.server.batching.queue import Job
from deepserve.server.protocol.codecs import datatype_from_config, numpy_dtype
from deepserve.server.runtime import sessions as runtime
from deepserve.server.settings import default_engine_cache

from .models import read_config


def _config(repository: Path, model: str, device: str) -> mc.ModelConfig:
    config = read_config(repository / model)
    if device == "cuda" and not config.dynamic_batching.preferred_batch_size:
        config.dynamic_batching.preferred_batch_size[:] = [
            b for b in (8, 32, 64) if b < config.max_batch_size
        ]
    return config


def _session(path: Path, config: mc.ModelConfig, device: str, graphs: bool, cache: Path):
    if graphs:
        config = mc.ModelConfig.FromString(config.SerializeToString())
        config.parameters["cuda_graphs"].string_value = "1"
    choice = runtime.choose_providers(config, device, model_file=path, engine_cache=cache)
    return runtime.create_session(path, choice, 0)


def _jobs(config: mc.ModelConfig, batch: int, rng: np.random.Generator) -> list[Job]:
    """`batch` one-image requests, as the batcher would hand them over."""
    jobs = []
    for _ in range(batch):
        feeds = {}
        for tensor in config.input:
            dtype = numpy_dtype(datatype_from_config(tensor.data_type))
            shape = (1, *(d if d > 0 else 224 for d in tensor.dims))
            feeds[tensor.name] = rng.integers(0, 255, shape).astype(dtype)
        jobs.append(Job(feeds, 1, (), (), 0, 0, None, None, None))  # type: ignore[arg-type]
    return jobs


def _time(instance: Instance, jobs: list[Job], names: list[str], seconds: float) -> float:
    """Median seconds of one batch run, gather to answers, over `seconds` of runs."""
    for _ in range(3):
        instance.run(jobs, names)
    times: list[float] = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or len(times) < 5:
        t0 = time.perf_counter()
        instance.run(jobs, names)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(
    repository: Path, model: str, device: str, batches: list[int], seconds: float, cache: Path
) -> dict[str, Any]:
    config = _config(repository, model, device)
    path = repository / model / "1" / "model.onnx"
    session = _session(path, config, device, False, cache)
    names = [o.name for o in config.output]
    paths: dict[str, Any] = {
        "plain": PlainInstance(session),
        "iobinding": BoundInstance(session, config, pinned=False),
    }
    pinned = BoundInstance(session, config, pinned=True)
    paths["iobinding+pinned"] = pinned
    notes = {"pinned": pinned.pinned, "providers": session.get_providers()}
    if device == "cuda":
        try:
            graphs = GraphInstance(_session(path, config, device, True, cache), config, pinned=True)
            graphs.warm_up()
            paths["cuda graphs+pinned"] = graphs
            notes["graph_buckets"] = graph_buckets(config)
        except Exception as exc:  # record why, measure the rest
            notes["cuda_graphs_error"] = str(exc)[:300]
    rng = np.random.default_rng(0)
    results: dict[str, dict[int, float]] = {label: {} for label in paths}
    for batch in [b for b in batches if b <= max(config.max_batch_size, 1)]:
        jobs = _jobs(config, batch, rng)
        for label, instance in paths.items():
            results[label][batch] = batch / _time(instance, jobs, names, seconds)
        print(
            f"batch {batch:4d}: "
            + ", ".join(f"{label} {results[label][batch]:9.1f}" for label in paths)
            + " images/s",
            flush=True,
        )
    return {
        "model": model,
        "device": device,
        "onnxruntime": ort.__version__,
        "images_per_s": results,
        **notes,
    }


def _plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    for label, by_batch in report["images_per_s"].items():
        batches = sorted(by_batch)
        axes.plot(batches, [by_batch[b] for b in batches], marker="o", label=label)
    axes.set_xscale("log", base=2)
    axes.set_xlabel("batch (one-image requests)")
    axes.set_ylabel("images/s, gather to answers")
    axes.set_title(f"{report['model']} on {report['device']}: how a batch reaches the model")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist")
    parser.add_argument("--model-repository", type=Path, default=Path("models"))
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batches", default="1,8,32,64,128")
    parser.add_argument("--seconds", type=float, default=1.0, help="timed runs per point")
    parser.add_argument("--engine-cache", type=Path, default=default_engine_cache())
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    report = measure(
        args.model_repository, args.model, args.device, batches, args.seconds, args.engine_cache
    )
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"host-device-{args.model}-{args.device}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    with contextlib.suppress(ImportError):  # matplotlib is the loadtest extra's
        _plot(report, stem.with_suffix(".png"))
    print(json.dumps({k: v for k, v in report.items() if k != "images_per_s"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
