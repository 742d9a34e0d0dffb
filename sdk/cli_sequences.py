"""`deepserve read IMAGE...`: a digit read row by row by a sequence model (the LSTM reader),
its belief printed after each request, as the server keeps the reader's state between them."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from . import cli_connection
from .cli_tasks import guarded


def digit_rows(path: Path) -> np.ndarray:
    """The image as MNIST draws digits: 28x28 grayscale, uint8."""
    with Image.open(path) as image:
        return np.asarray(image.convert("L").resize((28, 28), Image.Resampling.BILINEAR))


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


def _run_read(args: argparse.Namespace) -> int:
    client = cli_connection.client(args)
    for path in args.images:
        rows = digit_rows(path)
        print(f"{path}:")
        with client.sequence(args.model) as reading:
            for first in range(0, 28, args.rows):
                last = min(first + args.rows, 28)
                logits = reading.send(rows[None, first:last], end=last == 28)["logits"][0]
                chances = _softmax(logits)
                best = int(chances.argmax())
                bar = "#" * round(20 * float(chances[best]))
                print(f"  rows {first:2d}-{last - 1:2d}: {best} {chances[best]:6.1%} {bar}")
        print(f"  read: {best}")
    return 0


def _rows(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 28:
        raise argparse.ArgumentTypeError(f"rows a request must be 1 to 28, got {value}")
    return value


def add_sequence_commands(commands: argparse._SubParsersAction) -> None:
    read = commands.add_parser(
        "read", help="digits read row by row by a sequence model, its belief after each request"
    )
    read.add_argument("images", nargs="+", type=Path, help="images of single digits")
    read.add_argument("--model", default="lstm_reader", help="a sequence model taking `rows`")
    read.add_argument("--rows", type=_rows, default=4, help="rows a request (1 to 28)")
    cli_connection.add_connection_options(read)
    read.add_argument("--timeout", type=float, default=30.0, help="seconds per call")
    read.set_defaults(run=guarded(_run_read))
