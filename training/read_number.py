"""Write the read_number pipeline (ssd -> digit_crops -> mnist -> number_order, a Triton
ensemble) into a model repository and measure how well it reads held-out house numbers.

    python -m deepserve.training.read_number --data ../shared/data/mnist --out models

It needs `ssd` and `mnist` in --out already (their training scripts); it adds the two glue
graphs and the ensemble, then runs the four models in this process, as the server chains them,
on house numbers of held-out digits: exact-match reading accuracy, overall and by length.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from .cli_args import add_common, parse
from .held_out import number_scenes
from .mnist_data import load_split
from .model_files import cpu_session, write_model_card, write_report
from .number_graphs import CROPS, MAX_DIGITS, ORDER, SCORE_MIN, crops_graph, order_graph
from .scenes import SIZE

NAME = "read_number"
DETECTOR, CLASSIFIER = "ssd", "mnist"
MAX_CLASSIFIER_BATCH = 64
"""mnist's max_batch_size: a call reads up to this / MAX_DIGITS images."""


def _tensor(config, name: str, data_type: int, dims: list[int]) -> None:
    config.add(name=name, data_type=data_type, dims=dims)


def _glue_config(name: str, inputs, outputs) -> mc.ModelConfig:
    """A non-batching ONNX model: its first dimension is whatever the caller's is."""
    config = mc.ModelConfig(name=name, platform="onnxruntime_onnx", max_batch_size=0)
    for tensor in inputs:
        _tensor(config.input, *tensor)
    for tensor in outputs:
        _tensor(config.output, *tensor)
    # Boxes and logits are numbers: NaN or infinity from a caller is refused, naming the input.
    config.parameters["finite_inputs"].string_value = "1"
    # Small steps beside the detector: threads that sleep between operators leave it the cores.
    config.parameters["intra_op_spinning"].string_value = "0"
    return config


def ensemble_config() -> mc.ModelConfig:
    config = mc.ModelConfig(name=NAME, platform="ensemble", max_batch_size=0)
    _tensor(config.input, "image", mc.TYPE_UINT8, [-1, SIZE, SIZE, 3])
    _tensor(config.output, "number", mc.TYPE_STRING, [-1])
    _tensor(config.output, "digits", mc.TYPE_INT64, [-1, MAX_DIGITS])
    _tensor(config.output, "boxes", mc.TYPE_FP32, [-1, MAX_DIGITS, 4])
    _tensor(config.output, "confidences", mc.TYPE_FP32, [-1, MAX_DIGITS])
    _tensor(config.output, "count", mc.TYPE_INT64, [-1])
    steps = [
        (DETECTOR, {"image": "image"}, {"boxes": "detected_boxes", "scores": "detected_scores"}),
        (
            CROPS,
            {"image": "image", "boxes": "detected_boxes", "scores": "detected_scores"},
            {"crops": "crops", "digit_boxes": "digit_boxes", "digit_scores": "digit_scores"},
        ),
        (CLASSIFIER, {"image": "crops"}, {"logits": "crop_logits"}),
        (
            ORDER,
            {"logits": "crop_logits", "digit_boxes": "digit_boxes", "digit_scores": "digit_scores"},
            {name: name for name in ("number", "digits", "boxes", "confidences", "count")},
        ),
    ]
    for model, inputs, outputs in steps:
        step = config.ensemble_scheduling.step.add(model_name=model, model_version=-1)
        step.input_map.update(inputs)
        step.output_map.update(outputs)
    parameters = {
        "task": "read",
        "image_height": str(SIZE),
        "image_width": str(SIZE),
        "image_channels": "3",
        "resize_mode": "stretch",
    }
    for key, value in parameters.items():
        config.parameters[key].string_value = value
    return config


def write_pipeline(out: Path) -> None:
    """The two glue graphs and the ensemble, each in its folder of `out`."""
    glue = {
        CROPS: (
            crops_graph(),
            _glue_config(
                CROPS,
                [
                    ("image", mc.TYPE_UINT8, [-1, -1, -1, 3]),
                    ("boxes", mc.TYPE_FP32, [-1, -1, 4]),
                    ("scores", mc.TYPE_FP32, [-1, -1]),
                ],
                [
                    ("crops", mc.TYPE_UINT8, [-1, 28, 28, 1]),
                    ("digit_boxes", mc.TYPE_FP32, [-1, MAX_DIGITS, 4]),
                    ("digit_scores", mc.TYPE_FP32, [-1, MAX_DIGITS]),
                ],
            ),
        ),
        ORDER: (
            order_graph(),
            _glue_config(
                ORDER,
                [
                    ("logits", mc.TYPE_FP32, [-1, 10]),
                    ("digit_boxes", mc.TYPE_FP32, [-1, MAX_DIGITS, 4]),
                    ("digit_scores", mc.TYPE_FP32, [-1, MAX_DIGITS]),
                ],
                [
                    ("number", mc.TYPE_STRING, [-1]),
                    ("digits", mc.TYPE_INT64, [-1, MAX_DIGITS]),
                    ("boxes", mc.TYPE_FP32, [-1, MAX_DIGITS, 4]),
                    ("confidences", mc.TYPE_FP32, [-1, MAX_DIGITS]),
                    ("count", mc.TYPE_INT64, [-1]),
                ],
            ),
        ),
    }
    for name, (graph, config) in glue.items():
        (out / name / "1").mkdir(parents=True, exist_ok=True)
        onnx.save(graph, str(out / name / "1" / "model.onnx"))
        (out / name / "config.pbtxt").write_text(text_format.MessageToString(config))
    (out / NAME / "1").mkdir(parents=True, exist_ok=True)
    # An ensemble's version folder holds nothing; git keeps it by this file.
    (out / NAME / "1" / ".gitkeep").touch()
    (out / NAME / "config.pbtxt").write_text(text_format.MessageToString(ensemble_config()))


class Chain:
    """The four models in this process, run as the ensemble runs them."""

    def __init__(self, repository: Path) -> None:
        self.sessions = {
            name: cpu_session(repository / name / "1" / "model.onnx")
            for name in (DETECTOR, CROPS, CLASSIFIER, ORDER)
        }

    def __call__(self, images: np.ndarray) -> list[str]:
        run = {name: session.run for name, session in self.sessions.items()}
        boxes, scores, _, _ = run[DETECTOR](None, {"image": images})
        crops, digit_boxes, digit_scores = run[CROPS](
            None, {"image": images, "boxes": boxes, "scores": scores}
        )
        (logits,) = run[CLASSIFIER](None, {"image": crops})
        number = run[ORDER](
            ["number"],
            {"logits": logits, "digit_boxes": digit_boxes, "digit_scores": digit_scores},
        )[0]
        return [n.decode() if isinstance(n, bytes) else str(n) for n in number]


def reading_accuracy(chain: Chain, scenes, batch: int = 8) -> dict:
    right, by_length, read = Counter(), Counter(), []
    for start in range(0, len(scenes), batch):
        chunk = scenes[start : start + batch]
        read += chain(np.stack([s.image for s in chunk]))
    for scene, text in zip(scenes, read, strict=True):
        by_length[len(scene.text)] += 1
        right[len(scene.text)] += text == scene.text
    wrong = [(s.text, t) for s, t in zip(scenes, read, strict=True) if s.text != t]
    return {
        "exact_match": sum(right.values()) / len(scenes),
        "by_length": {n: right[n] / by_length[n] for n in sorted(by_length)},
        "scenes": len(scenes),
        "first_misreadings": wrong[:12],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common(parser, "a few held-out scenes, for tests")
    parser.add_argument("--held-out", type=int, default=1000, help="house numbers to read")
    args = parse(parser, argv)
    if args.quick:
        args.held_out = 8
    wanted = (DETECTOR, CLASSIFIER)
    missing = [n for n in wanted if not (args.out / n / "1" / "model.onnx").is_file()]
    if missing:
        parser.error(f"{args.out} lacks {missing}: train them first")
    write_pipeline(args.out)
    split = load_split(args.data)
    scenes = number_scenes(split, args.held_out)
    started = time.perf_counter()
    measured = reading_accuracy(Chain(args.out), scenes)
    seconds = time.perf_counter() - started
    report = {"model": NAME, **measured, "seconds": seconds, "data": split.description}
    model_dir = args.out / NAME
    write_report(model_dir, report)
    lengths = ", ".join(f"{n} digits {a:.1%}" for n, a in measured["by_length"].items())
    write_model_card(
        model_dir,
        "read_number: house numbers read by a pipeline of four models",
        {
            "What": "A Triton ensemble: `ssd` finds the digits, `digit_crops` keeps those "
            f"scoring above {SCORE_MIN} (chosen on house numbers of training digits) that no "
            "better box covers and cuts each out as MNIST draws digits (RoiAlign, ink by "
            "colour, white on black, 20 px in 28), `mnist` "
            "classifies the crops, `number_order` puts them left to right and writes the "
            "number. Each step runs in its own model's batcher; tensors pass between steps "
            "in the server's memory.",
            "Input / output": f"`image` uint8 [N, {SIZE}, {SIZE}, 3]; `number` BYTES [N] "
            f'("4071"), `digits` int64 [N, {MAX_DIGITS}] (-1 past the last), `boxes` fp32 '
            f"[N, {MAX_DIGITS}, 4] (x1 y1 x2 y2 input pixels, left to right), `confidences` "
            f"fp32 [N, {MAX_DIGITS}] (classifier probability times detector score), `count` "
            f"int64 [N]. A call holds up to 32 pictures (ssd's largest batch) with up to "
            f"{MAX_CLASSIFIER_BATCH} digits together (mnist's), so "
            f"{MAX_CLASSIFIER_BATCH // MAX_DIGITS} pictures always fit. The "
            "Vision API's `read` task sends one image per call and answers text with a box per "
            "character.",
            "Data": f"{len(scenes)} house numbers of 2 to 6 held-out MNIST digits "
            f"({split.description}) in a row, with varied size, spacing, baseline jitter, ink "
            "and background, never seen in training.",
            "Command": "`python -m deepserve.training.read_number --data DIR --out models` "
            "(after the ssd and mnist scripts)",
            "Metrics": f"exact-match reading accuracy {measured['exact_match']:.1%} on "
            f"{len(scenes)} held-out house numbers ({lengths}).",
            "What Triton's format cannot say": "The crops of N images are as many rows of one "
            "batch for the classifier as the images hold digits, a change of batch size that a "
            "batching model's config cannot state; so the glue models and the ensemble take "
            "the batch as a plain first dimension (max_batch_size 0), as Triton allows, and "
            "the batching steps (ssd, mnist) still batch across calls.",
        },
    )
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
