"""INT8 variants of exported image models: ONNX Runtime's static quantization (QDQ: int8
weights, uint8 activations), calibrated on each family's own training data, with the uint8
image input and every output unchanged, so `<model>_int8` is served and called like its
source. Each variant is measured beside its FP32 source on held-out data and in-process speed.

    deepserve-train quantize --models models --out models --data ../shared/data/mnist
    deepserve-train quantize cifar10_resnet20 ssd --cifar10 DIR   # CIFAR-10's binary batches

Per-channel and per-tensor weight scales are both tried, and where both lose more than
--max-drop points, per-channel with the sensitive convolutions (first, last three, depthwise)
left in FP32; the variant keeps the one that loses least. Exit status 1 when it still loses
more than --max-drop points.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from tritonclient.grpc import model_config_pb2 as mc

from . import variants
from .mnist_data import DEFAULT_DATA, digits_as, load_split
from .model_files import cpu_latency_ms, onnx_size_mb, write_model_card, write_report
from .precision_check import CIFAR10, compare, label_names
from .scenes import make_scenes
from .variants import newest_version, read_config

SUFFIX = "_int8"
MAX_DROP_POINTS = 0.5
CALIBRATION_IMAGES = 256
CALIBRATION_SEED = 737373  # training digits, scenes no held-out set uses
BATCHES = (1, 8, 32, 64)
SCHEMES = (
    ("per-channel", True, False),
    ("per-tensor", False, False),
    ("per-channel, first, last and depthwise convolutions in FP32", True, True),
)
"""Weight scales tried in turn, and whether sensitive convolutions stay FP32: the last only
when neither of the others keeps the metric."""


def _task(config: mc.ModelConfig) -> str:
    return config.parameters["task"].string_value if "task" in config.parameters else ""


def _cifar10_training(folder: Path, count: int) -> np.ndarray:
    records = np.fromfile(folder / "data_batch_1.bin", np.uint8).reshape(-1, 1 + 3 * 32 * 32)
    images = records[:count, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images)


def calibration_images(
    model_dir: Path, data: Path, cifar10: Path | None, count: int = CALIBRATION_IMAGES
) -> tuple[np.ndarray, str]:
    """Training images of the model's family (never held-out ones) and what they are."""
    config = read_config(model_dir)
    split = load_split(data)
    if _task(config) in ("detection", "segmentation"):
        scenes = make_scenes(split.train_images, split.train_labels, count, CALIBRATION_SEED)
        return np.stack([s.image for s in scenes]), f"{count} scenes of training digits"
    height, width, channels = (int(d) for d in config.input[0].dims)
    cifar10_batch = cifar10 / "data_batch_1.bin" if cifar10 is not None else None
    if label_names(config, model_dir) == CIFAR10 and cifar10_batch and cifar10_batch.is_file():
        return _cifar10_training(cifar10, count), f"{count} CIFAR-10 training images"
    images = digits_as(split.train_images[:count], height, width, channels)
    return images, f"{count} training MNIST digits as {height}x{width}x{channels} images"


def sensitive_convolutions(graph: onnx.GraphProto) -> list[str]:
    """Convolutions that lose the most in 8 bits: the first (raw pixels), the last three (the
    head that draws the answer) and depthwise ones (one channel's few weights a group)."""
    convs = [n for n in graph.node if n.op_type == "Conv"]
    depthwise = [n for n in convs if any(a.name == "group" and a.i > 1 for a in n.attribute)]
    return sorted({n.name for n in [*convs[:1], *convs[-3:], *depthwise]})


def quantize_graph(
    source: Path,
    destination: Path,
    images: np.ndarray,
    per_channel: bool,
    input_name: str,
    keep_sensitive: bool = False,
) -> None:
    """Static QDQ quantization of `source`, its ranges measured on `images` (MinMax);
    `keep_sensitive`: only convolutions, and the sensitive ones stay FP32."""
    from onnxruntime.quantization import (  # the train extra's onnxruntime; here only
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter({input_name: images[i : i + 32]} for i in range(0, len(images), 32))

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        # Shapes and constant folding first, as ONNX Runtime's quantization guide asks.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        only_convs: dict[str, object] = {}
        if keep_sensitive:
            graph = onnx.load(str(prepared)).graph
            only_convs = {
                "op_types_to_quantize": ["Conv"],
                "nodes_to_exclude": sensitive_convolutions(graph),
            }
        quantize_static(
            str(prepared),
            str(destination),
            Batches(),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            **only_convs,
        )


def _speed(path: Path, example: np.ndarray, most: int) -> dict[int, float]:
    """Images a second in process at each batch size up to `most`."""
    batches = [b for b in BATCHES if b <= max(most, 1)]
    latency = cpu_latency_ms(path, example, batches, runs=10)
    return {batch: batch * 1e3 / ms for batch, ms in latency.items()}


def _measure(
    model_dir: Path, variant_file: Path, data: Path, cifar10: Path | None
) -> dict[str, object]:
    config = read_config(model_dir)
    result = compare(config, model_dir, newest_version(model_dir), variant_file, data, cifar10)
    result["int8"] = result.pop("fp16")
    points = 100 if result["unit"] == "fraction" else 1
    result["drop_points"] = (result["fp32"] - result["int8"]) * points
    return result


def write_int8_variant(
    model_dir: Path, out: Path, data: Path, cifar10: Path | None, max_drop: float
) -> dict:
    """<out>/<name>_int8 with the better of per-channel and per-tensor scales, its card and
    report; returns the report."""
    config = read_config(model_dir)
    source = newest_version(model_dir)
    input_name = config.input[0].name
    images, calibrated_on = calibration_images(model_dir, data, cifar10)
    tried: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for scales, per_channel, keep in SCHEMES:
            if keep and min(t["drop_points"] for t in tried.values()) <= max_drop:
                break  # the whole graph in 8 bits holds: no need to keep layers in FP32
            path = Path(scratch) / f"{len(tried)}.onnx"
            quantize_graph(source, path, images, per_channel, input_name, keep)
            tried[scales] = {"path": path, **_measure(model_dir, path, data, cifar10)}
        best = min(tried, key=lambda k: tried[k]["drop_points"])  # earlier first on a tie

        def copy(_source: Path, destination: Path) -> None:
            destination.write_bytes(Path(tried[best]["path"]).read_bytes())

        variant = variants.write_variant(model_dir, out, SUFFIX, "INT8", copy)
    variant_file = newest_version(variant)
    chosen = {k: v for k, v in tried[best].items() if k != "path"}
    speed = {
        "fp32": _speed(source, images, config.max_batch_size),
        "int8": _speed(variant_file, images, config.max_batch_size),
    }
    report = {
        "model": variant.name,
        "source": model_dir.name,
        "precision": "INT8 (QDQ: int8 weights, uint8 activations); uint8 input, outputs kept",
        "scales": best,
        "calibrated_on": calibrated_on,
        **chosen,
        "drop_points_other_scales": {k: v["drop_points"] for k, v in tried.items() if k != best},
        "images_per_s": {k: {str(b): round(v, 1) for b, v in s.items()} for k, s in speed.items()},
        "speedup_batch1": speed["int8"][1] / speed["fp32"][1],
        "speedup_best": max(speed["int8"].values()) / max(speed["fp32"].values()),
        "size_mb": onnx_size_mb(variant_file),
        "source_size_mb": onnx_size_mb(source),
        "within_max_drop": chosen["drop_points"] <= max_drop,
    }
    write_report(variant, report)
    _write_card(variant, model_dir, report)
    return report


def _write_card(variant: Path, model_dir: Path, report: dict) -> None:
    speed = report["images_per_s"]
    best = {k: max(v.items(), key=lambda item: item[1]) for k, v in speed.items()}
    write_model_card(
        variant,
        f"{variant.name}: {model_dir.name} in INT8",
        {
            "What": f"`{model_dir.name}` quantized statically by ONNX Runtime (QDQ format, "
            f"{report['scales']} weight scales, MinMax ranges calibrated on "
            f"{report['calibrated_on']}). Its `image` input stays uint8 and its outputs keep "
            "their types: it is served and called exactly like the FP32 model. For CPUs with "
            "8-bit dot products (AVX-512 VNNI, AVX-VNNI, Arm dot product).",
            "Command": f"`deepserve-train quantize {model_dir.name} --models "
            f"{model_dir.parent.name} --out {variant.parent.name}`",
            "Metrics": f"{report['metric']} on {report['held_out']}: FP32 {report['fp32']:.4f}, "
            f"INT8 {report['int8']:.4f} (drop {report['drop_points']:.2f} points; the other "
            f"scales: {json.dumps(report['drop_points_other_scales'])}). " + report.get("note", ""),
            "Speed": f"In process on this CPU, images a second at batch 1: FP32 "
            f"{speed['fp32']['1']:.0f}, INT8 {speed['int8']['1']:.0f} "
            f"({report['speedup_batch1']:.2f}x); at the best batch: FP32 {best['fp32'][1]:.0f} "
            f"(batch {best['fp32'][0]}), INT8 {best['int8'][1]:.0f} (batch {best['int8'][0]}) "
            f"({report['speedup_best']:.2f}x).",
            "Size": f"{report['size_mb']:.2f} MB (FP32: {report['source_size_mb']:.2f} MB).",
        },
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="models to quantize (default: every image model)")
    parser.add_argument("--models", type=Path, default=Path("models"), help="model repository")
    parser.add_argument("--out", type=Path, default=Path("models"), help="where variants go")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MNIST IDX folder")
    parser.add_argument(
        "--cifar10",
        type=Path,
        help="folder with CIFAR-10's binary batches (data_batch_1.bin to calibrate, "
        "test_batch.bin to measure)",
    )
    parser.add_argument("--max-drop", type=float, default=MAX_DROP_POINTS, help="points")
    parser.add_argument(
        "--keep-failed", action="store_true", help="keep a variant that fails --max-drop"
    )
    args = parser.parse_args(argv)
    names = args.names or variants.image_models(args.models, ("_fp16", SUFFIX))
    for name in names:
        if not (args.models / name / "config.pbtxt").is_file():
            parser.error(f"no model '{name}' in {args.models}")
    failed = []
    for name in names:
        report = write_int8_variant(
            args.models / name, args.out, args.data, args.cifar10, args.max_drop
        )
        print(
            f"{report['model']}: {report['metric']} FP32 {report['fp32']:.4f} INT8 "
            f"{report['int8']:.4f} drop {report['drop_points']:.2f} points ({report['scales']}); "
            f"batch 1 {report['speedup_batch1']:.2f}x, best batch {report['speedup_best']:.2f}x",
            flush=True,
        )
        if not report["within_max_drop"]:
            failed.append(name)
            if not args.keep_failed:  # a repository should not serve what failed its check
                shutil.rmtree(args.out / report["model"])
                print(f"{report['model']}: removed (over --max-drop; --keep-failed keeps it)")
    print(json.dumps({"over_the_limit": failed, "max_drop_points": args.max_drop}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
