"""INT8 for the families without an image input: each graph quantized dynamically by ONNX
Runtime (int8 weights, activations' ranges taken at each run: its method for recurrent and
fully connected models, which have no fixed activation ranges to calibrate), then measured
beside FP32 on the family's own held-out metric and in-process speed. Nothing is written into
the repository: where INT8 wins, `deepserve-train quantize` is the tool for image models.

    python -m deepserve.training.int8_survey --models models --data ../shared/data/mnist \
        --out docs/benchmarks
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from .mnist_data import DEFAULT_DATA, load_split

Feeds = dict[str, np.ndarray]


def dynamic_int8(source: Path, destination: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(destination), weight_type=QuantType.QInt8)


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def per_second(path: Path, feeds: Feeds, seconds: float = 1.0) -> float:
    """Rows a second of one graph at the batch `feeds` holds."""
    session = _session(path)
    rows = len(next(iter(feeds.values())))
    session.run(None, feeds)
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        session.run(None, feeds)
        runs += 1
    return runs * rows / (time.perf_counter() - started)


def _batch(feeds: Feeds, size: int) -> Feeds:
    return {k: np.ascontiguousarray(v[np.arange(size) % len(v)]) for k, v in feeds.items()}


def lstm_reader(models: Path, data: Path) -> dict:
    split = load_split(data)
    digits, labels = split.test_images, split.test_labels
    states = np.zeros((len(digits), 2, 128), np.float32)

    def accuracy(path: Path) -> float:
        feeds = {"rows": digits, "h_in": states, "c_in": states}
        return float((_session(path).run(["logits"], feeds)[0].argmax(1) == labels).mean())

    example = {"rows": digits[:64], "h_in": states[:64], "c_in": states[:64]}
    return {
        "metric": f"top-1 accuracy, {len(digits)} held-out digits read in one call of 28 rows",
        "graphs": {"model.onnx": example},
        "measure": accuracy,
    }


def date_translator(models: Path, data: Path) -> dict:
    from . import dates
    from .date_translator import decode_tokens, encode_texts, onnx_greedy

    unseen = sorted(dates.held_out_dates(2000, 0))[:500]
    formats = dates.HELD_OUT_FORMATS.values()
    pairs = [(write(day), day.isoformat()) for day in unseen for write in formats]

    texts, answers = [t for t, _ in pairs], [iso for _, iso in pairs]

    def exact(folder: Path) -> float:
        tokens = onnx_greedy(folder / "encoder.onnx", folder / "decoder_step.onnx", texts)
        return float(np.mean([decode_tokens(t) == a for t, a in zip(tokens, answers, strict=True)]))

    text = encode_texts([t for t, _ in pairs[:64]])
    memory, mask, hidden = _session(models / "date_translator" / "1" / "encoder.onnx").run(
        None, {"text": text}
    )
    step = {"token": np.zeros(64, np.int64), "hidden": hidden, "memory": memory, "mask": mask,
            "context": np.zeros_like(hidden)}  # fmt: skip
    return {
        "metric": f"exact match, {len(pairs)} held-out dates in held-out formats (greedy)",
        "graphs": {"encoder.onnx": {"text": text}, "decoder_step.onnx": step},
        "measure_folder": exact,
    }


def cartpole_policy(models: Path, data: Path) -> dict:
    from .cartpole import EVALUATION_SEEDS, run_episodes

    def mean_return(path: Path) -> float:
        session = _session(path)

        def act(observation: np.ndarray) -> int:
            return int(session.run(["action"], {"observation": observation})[0][0, 0])

        return float(np.mean(run_episodes(act, EVALUATION_SEEDS[:20])))

    rng = np.random.default_rng(0)
    observations = (rng.standard_normal((64, 4)) * [1.0, 1.0, 0.1, 1.0]).astype(np.float32)
    return {
        "metric": "mean return, 20 held-out episodes (500 is the most)",
        "graphs": {"model.onnx": {"observation": observations}},
        "measure": mean_return,
    }


def mnist_cgan(models: Path, data: Path) -> dict:
    classifier = _session(models / "mnist" / "1" / "model.onnx")
    seeds = np.arange(100, dtype=np.int64)[:, None]

    def agreement(path: Path) -> float:
        session, hits = _session(path), 0
        for digit in range(10):
            feeds = {"class": np.full_like(seeds, digit), "seed": seeds}
            images = session.run(["image"], feeds)[0]
            hits += int((classifier.run(None, {"image": images})[0].argmax(1) == digit).sum())
        return hits / (10 * len(seeds))

    example = {"class": (np.arange(64) % 10).astype(np.int64)[:, None], "seed": seeds[:64]}
    return {
        "metric": "class agreement: generated digits the mnist classifier reads as asked, 1,000",
        "graphs": {"model.onnx": example},
        "measure": agreement,
    }


def word_embed(models: Path, data: Path) -> dict:
    graph = onnx.load(str(models / "word_embed" / "1" / "model.onnx")).graph
    encoder = next(n for n in graph.node if n.op_type == "LabelEncoder")
    words = list(next(a for a in encoder.attribute if a.name == "keys_strings").strings)
    vocabulary = np.array([w.decode() for w in words], dtype=object)[:, None]
    reference = _session(models / "word_embed" / "1" / "model.onnx").run(
        ["vector"], {"word": vocabulary}
    )[0]

    def cosine(path: Path) -> float:
        vectors = _session(path).run(["vector"], {"word": vocabulary})[0]
        norms = np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference, axis=1)
        return float(np.mean((vectors * reference).sum(1) / np.maximum(norms, 1e-12)))

    return {
        "metric": f"mean cosine of each word's vector with FP32's, {len(words)} words",
        "graphs": {"model.onnx": {"word": vocabulary[:256]}},
        "measure": cosine,
    }


FAMILIES: dict[str, Callable[[Path, Path], dict]] = {
    "lstm_reader": lstm_reader,
    "date_translator": date_translator,
    "cartpole_policy": cartpole_policy,
    "mnist_cgan": mnist_cgan,
    "word_embed": word_embed,
}


def survey(name: str, models: Path, data: Path) -> dict:
    plan = FAMILIES[name](models, data)
    source = models / name / "1"
    with tempfile.TemporaryDirectory() as scratch:
        quantized = Path(scratch)
        for graph in plan["graphs"]:
            dynamic_int8(source / graph, quantized / graph)
        if "measure_folder" in plan:
            fp32, int8 = plan["measure_folder"](source), plan["measure_folder"](quantized)
        else:
            graph = next(iter(plan["graphs"]))
            fp32, int8 = plan["measure"](source / graph), plan["measure"](quantized / graph)
        speed = {}
        for graph, feeds in plan["graphs"].items():
            for rows in (1, len(next(iter(feeds.values())))):
                batch = _batch(feeds, rows)
                speed[f"{graph} batch {rows}"] = {
                    "fp32": per_second(source / graph, batch),
                    "int8": per_second(quantized / graph, batch),
                }
    return {"family": name, "metric": plan["metric"], "fp32": fp32, "int8": int8,
            "rows_per_s": speed}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"families (default: {', '.join(FAMILIES)})")
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MNIST IDX folder")
    parser.add_argument("--out", type=Path, help="folder for int8-survey-cpu.json")
    args = parser.parse_args(argv)
    results = []
    for name in args.names or FAMILIES:
        result = survey(name, args.models, args.data)
        speeds = "; ".join(
            f"{where} {s['int8'] / s['fp32']:.2f}x" for where, s in result["rows_per_s"].items()
        )
        print(f"{name}: {result['metric']}: FP32 {result['fp32']:.4f} INT8 "
              f"{result['int8']:.4f}; INT8 speed: {speeds}", flush=True)  # fmt: skip
        results.append(result)
    if args.out:
        write_survey(args.out / "int8-survey-cpu.json", results)
    return 0


def write_survey(path: Path, results: list[dict]) -> None:
    """The families surveyed replace their entries; the others' stay as they were."""
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = json.loads(path.read_text()) if path.exists() else []
    by_family = {r["family"]: r for r in kept} | {r["family"]: r for r in results}
    ordered = [by_family.pop(name) for name in FAMILIES if name in by_family]
    path.write_text(json.dumps([*ordered, *by_family.values()], indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
