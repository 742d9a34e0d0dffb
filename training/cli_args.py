"""Command-line options every training script shares."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .mnist_data import DEFAULT_DATA


def add_common(parser: argparse.ArgumentParser, quick_help: str) -> None:
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="folder with the MNIST IDX files (.gz or not)",
    )
    parser.add_argument("--out", type=Path, default=Path("models"), help="model repository")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--quick", action="store_true", help=quick_help)
    add_fp16(parser)


def add_download(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--download",
        action="store_true",
        help="download the public MNIST files into --data first (needs internet)",
    )


def add_fp16(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fp16",
        action="store_true",
        help="also write <name>_fp16 (FP16 weights and arithmetic, same input and outputs) and "
        "check it on held-out data",
    )


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    return args
