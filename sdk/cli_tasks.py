"""`deepserve classify | detect | segment | read-number IMAGE...`: the SDK from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import cast

from PIL import Image

from . import cli_connection
from .client import Client
from .drawing import draw_detections, draw_reading, overlay_mask
from .errors import DeepserveError
from .results import Classification, Detection, Reading, Segmentation


def _client(args: argparse.Namespace) -> Client:
    return cli_connection.client(args)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", type=Path, help="image files")
    parser.add_argument(
        "--model",
        default=None,
        help="model name (may be left out when only one model does the task)",
    )
    cli_connection.add_connection_options(parser)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per call")


def _out_path(out: Path, image: Path, many: bool) -> Path:
    """--out names the file for one image; for several, a folder to write into."""
    if not many:
        return out
    out.mkdir(parents=True, exist_ok=True)
    return out / f"{image.stem}.png"


def _run_classify(args: argparse.Namespace) -> int:
    results = cast(
        list[Classification],
        _client(args).classify(list(args.images), model=args.model, top_k=args.top_k),
    )
    for image, result in zip(args.images, results, strict=True):
        print(f"{image}: {result}")
    return 0


def _run_detect(args: argparse.Namespace) -> int:
    results = cast(
        list[list[Detection]],
        _client(args).detect(
            list(args.images), model=args.model, score_threshold=args.score_threshold
        ),
    )
    for image, found in zip(args.images, results, strict=True):
        print(f"{image}: {len(found)} found")
        for detection in found:
            print(f"  {detection}")
        if args.out:
            path = _out_path(args.out, image, len(args.images) > 1)
            draw_detections(Image.open(image), found).save(path)
            print(f"  drawn to {path}")
    return 0


def _run_segment(args: argparse.Namespace) -> int:
    results = cast(
        list[Segmentation], _client(args).segment(list(args.images), model=args.model, png=True)
    )
    for image, segmentation in zip(args.images, results, strict=True):
        print(
            f"{image}: {segmentation.mask.shape[1]}x{segmentation.mask.shape[0]} mask, "
            f"classes present: {', '.join(segmentation.classes_present)}"
        )
        if args.out:
            path = _out_path(args.out, image, len(args.images) > 1)
            overlay_mask(Image.open(image), segmentation).save(path)
            print(f"  overlay drawn to {path}")
    return 0


def _run_read(args: argparse.Namespace) -> int:
    results = cast(list[Reading], _client(args).read(list(args.images), model=args.model))
    for image, reading in zip(args.images, results, strict=True):
        print(f"{image}: {reading.text or '(nothing read)'}")
        for character in reading.characters:
            print(f"  {character}")
        if args.out:
            path = _out_path(args.out, image, len(args.images) > 1)
            draw_reading(Image.open(image), reading).save(path)
            print(f"  drawn to {path}")
    return 0


def add_task_commands(commands: argparse._SubParsersAction) -> None:
    classify = commands.add_parser("classify", help="top labels of images")
    _common(classify)
    classify.add_argument("--top-k", type=int, default=3, help="labels per image")
    classify.set_defaults(run=guarded(_run_classify))

    detect = commands.add_parser("detect", help="labelled boxes in images")
    _common(detect)
    detect.add_argument(
        "--score-threshold",
        type=float,
        default=None,
        help="keep boxes scoring at least this (default: the model's)",
    )
    detect.add_argument(
        "--out",
        type=Path,
        default=None,
        help="PNG with the boxes drawn (a folder when several images)",
    )
    detect.set_defaults(run=guarded(_run_detect))

    segment = commands.add_parser("segment", help="a class per pixel of images")
    _common(segment)
    segment.add_argument(
        "--out",
        type=Path,
        default=None,
        help="PNG with the mask coloured over the image (a folder when several)",
    )
    segment.set_defaults(run=guarded(_run_segment))

    # `read` is the sequence model's row-by-row reading (cli_sequences).
    read = commands.add_parser(
        "read-number", help="the number in pictures of house numbers (a read task: read_number)"
    )
    _common(read)
    read.add_argument(
        "--out",
        type=Path,
        default=None,
        help="PNG with each character's box drawn (a folder when several images)",
    )
    read.set_defaults(run=guarded(_run_read))


def guarded(run):
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except (DeepserveError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    return wrapper
