"""FP16 variants of exported models: weights and arithmetic in half precision, while the uint8
image input and every output keep their types, so clients, the server's task code and the
config see the same model. Each variant is checked on held-out data beside its FP32 source.

    deepserve-train fp16 --models models --out models-fp16 --data ../shared/data/mnist
    deepserve-train fp16 mnist ssd --out models      # writes models/mnist_fp16, models/ssd_fp16

Every family's training command takes `--fp16` to do the same right after its export.
Exit status 1 when a variant loses more than --max-drop points of its held-out metric.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import onnx
from onnx import TensorProto

from . import variants
from .mnist_data import DEFAULT_DATA
from .model_files import onnx_size_mb, write_model_card, write_report
from .variants import newest_version, read_config

SUFFIX = "_fp16"
VARIANT_SUFFIXES = ("_fp16", "_int8")
MAX_DROP_POINTS = 0.3


def _elem_types(graph: onnx.GraphProto) -> dict[str, int]:
    values = [*graph.value_info, *graph.input, *graph.output]
    return {v.name: v.type.tensor_type.elem_type for v in values}


def _match_casts(graph: onnx.GraphProto) -> None:
    """The converter retypes a Cast's output to FP16 but leaves the Cast casting to FLOAT (the
    uint8 image's first Cast): make the Cast produce what its output is declared to be."""
    declared = _elem_types(graph)
    for node in graph.node:
        if node.op_type != "Cast":
            continue
        to = next(a for a in node.attribute if a.name == "to")
        if to.i == TensorProto.FLOAT and declared.get(node.output[0]) == TensorProto.FLOAT16:
            to.i = TensorProto.FLOAT16


def _restore_outputs(graph: onnx.GraphProto, original: dict[str, int]) -> None:
    """An output the converter left in FP16 (one made by an op it keeps in FP32 and casts back,
    e.g. TopK's scores) gets a final Cast to its original type."""
    for output in graph.output:
        wanted = original[output.name]
        if output.type.tensor_type.elem_type == wanted:
            continue
        half = f"{output.name}_half"
        for node in graph.node:
            node.input[:] = [half if name == output.name else name for name in node.input]
            node.output[:] = [half if name == output.name else name for name in node.output]
        graph.node.append(
            onnx.helper.make_node("Cast", [half], [output.name], to=wanted, name=f"{half}_cast")
        )
        output.type.tensor_type.elem_type = wanted


def half_precision(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with FP16 weights and arithmetic, its inputs' and outputs' types unchanged."""
    original = {o.name: o.type.tensor_type.elem_type for o in model.graph.output}
    inputs = {i.name: i.type.tensor_type.elem_type for i in model.graph.input}
    from onnxconverter_common import float16  # only here: the families export without it

    with warnings.catch_warnings():  # one warning per weight too small for FP16's range
        warnings.simplefilter("ignore", UserWarning)
        converted = float16.convert_float_to_float16(model, keep_io_types=True)
    _match_casts(converted.graph)
    _restore_outputs(converted.graph, original)
    onnx.checker.check_model(converted, full_check=True)
    got_inputs = {i.name: i.type.tensor_type.elem_type for i in converted.graph.input}
    got_outputs = {o.name: o.type.tensor_type.elem_type for o in converted.graph.output}
    if got_inputs != inputs or got_outputs != original:
        raise ValueError(f"FP16 conversion changed the interface: {got_inputs} {got_outputs}")
    return converted


def write_variant(model_dir: Path, out: Path) -> Path:
    """Write <out>/<name>_fp16 from the newest version of `model_dir`; returns its folder."""

    def convert(source: Path, destination: Path) -> None:
        onnx.save(half_precision(onnx.load(str(source))), str(destination))

    return variants.write_variant(model_dir, out, SUFFIX, "FP16", convert)


def check_variant(model_dir: Path, variant: Path, data: Path, cifar10: Path | None) -> dict:
    """Measure the variant beside its source on held-out data; write its card and report."""
    from .precision_check import compare

    config = read_config(model_dir)
    result = compare(
        config, model_dir, newest_version(model_dir), newest_version(variant), data, cifar10
    )
    points = 100 if result["unit"] == "fraction" else 1
    result["drop_points"] = (result["fp32"] - result["fp16"]) * points
    report = {
        "model": variant.name,
        "source": model_dir.name,
        "precision": "FP16 weights and arithmetic; uint8 input and FP32 outputs kept",
        **result,
        "size_mb": onnx_size_mb(newest_version(variant)),
        "source_size_mb": onnx_size_mb(newest_version(model_dir)),
    }
    write_report(variant, report)
    write_model_card(
        variant,
        f"{variant.name}: {model_dir.name} in half precision",
        {
            "What": f"`{model_dir.name}` with FP16 weights and FP16 arithmetic; its `image` input "
            "stays uint8 and its outputs keep their types, so it is served and called exactly "
            "like the FP32 model. For GPUs (CUDA execution provider); on a CPU, ONNX Runtime "
            "runs the FP16 operators it lacks through casts, which is slower than FP32.",
            "Command": f"`deepserve-train fp16 {model_dir.name} --models "
            f"{model_dir.parent.name} --out {variant.parent.name}`",
            "Metrics": f"{result['metric']} on {result['held_out']}: FP32 {result['fp32']:.4f}, "
            f"FP16 {result['fp16']:.4f} (drop {report['drop_points']:.2f} points; measured "
            "with ONNX Runtime on the CPU). " + result.get("note", ""),
            "Size": f"{report['size_mb']:.2f} MB (FP32: {report['source_size_mb']:.2f} MB).",
        },
    )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="models to convert (default: every model)")
    parser.add_argument("--models", type=Path, default=Path("models"), help="model repository")
    parser.add_argument("--out", type=Path, default=Path("models"), help="where variants go")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MNIST IDX folder")
    parser.add_argument(
        "--cifar10", type=Path, help="folder with CIFAR-10's test_batch.bin (binary version)"
    )
    parser.add_argument("--max-drop", type=float, default=MAX_DROP_POINTS, help="points")
    parser.add_argument(
        "--no-check",
        action="store_true",
        help="write the variants without measuring them (random-weight benchmark models)",
    )
    args = parser.parse_args(argv)
    # Image models only: a sequence model's state, a generator's text or a policy's actions
    # are not among the checked metrics.
    names = args.names or variants.image_models(args.models, VARIANT_SUFFIXES)
    failed = []
    for name in names:
        variant = write_variant(args.models / name, args.out)
        if args.no_check:
            size_mb = onnx_size_mb(newest_version(variant))
            print(f"{variant.name}: written, not measured ({size_mb:.2f} MB)")
            continue
        report = check_variant(args.models / name, variant, args.data, args.cifar10)
        print(
            f"{variant.name}: {report['metric']} FP32 {report['fp32']:.4f} FP16 "
            f"{report['fp16']:.4f} drop {report['drop_points']:.2f} points "
            f"({report['held_out']}); {report['size_mb']:.2f} MB"
        )
        if report["drop_points"] > args.max_drop:
            failed.append(name)
    print(json.dumps({"over_the_limit": failed, "max_drop_points": args.max_drop}))
    return 1 if failed else 0


def after_export(args: argparse.Namespace, model_dir: Path, status: int) -> int:
    """A training command's exit status, once it has written and checked the FP16 variant
    beside the model it just exported when `--fp16` was given."""
    if not getattr(args, "fp16", False):
        return status
    data = getattr(args, "data", DEFAULT_DATA)
    variant = write_variant(model_dir, model_dir.parent)
    report = check_variant(model_dir, variant, data, getattr(args, "cifar10", None))
    print(f"{report['model']}: {json.dumps({k: report[k] for k in ('metric', 'fp32', 'fp16')})}")
    return max(status, 0 if report["drop_points"] <= MAX_DROP_POINTS else 1)


if __name__ == "__main__":
    sys.exit(main())
