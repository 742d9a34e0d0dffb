"""Commands for models with state or streamed answers: `deepserve read IMAGE...`, a digit read
row by row by a sequence model (the LSTM reader), its belief printed after each request as the
server keeps the reader's state; and `deepserve translate TEXT...`, texts through a text
generator (the date translator), whole or a token at a time, with where it looked."""

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


def _run_translate(args: argparse.Namespace) -> int:
    client = cli_connection.client(args)
    for text in args.texts:
        if args.stream:
            print(f"{text} -> ", end="", flush=True)
            for token in client.translate_stream(text, model=args.model):
                print(token.text, end="", flush=True)
            print()
            continue
        answer = client.translate(text, model=args.model)
        print(f"{text} -> {answer.text}")
        if args.attention:
            print(attention_table(answer.source, answer.text, answer.attention))
    return 0


def attention_table(source: str, text: str, attention: np.ndarray) -> str:
    """Where the model looked for each character: for each output character, the input
    characters holding most of its attention."""
    data = source.encode("utf-8")
    lines = []
    for char, weights in zip(text, attention, strict=False):
        top = np.argsort(weights)[::-1][:3]
        looked = ", ".join(
            f"{data[i : i + 1].decode('utf-8', 'replace')!r}@{i} {weights[i]:.0%}"
            for i in top
            if i < len(data)
        )
        lines.append(f"  {char}: {looked}")
    return "\n".join(lines)


def add_generation_commands(commands: argparse._SubParsersAction) -> None:
    translate = commands.add_parser(
        "translate", help="texts through a text generator (dates as people write them -> ISO)"
    )
    translate.add_argument("texts", nargs="+", help="texts, e.g. '3rd of May 1979'")
    translate.add_argument("--model", default="date_translator", help="a seq2seq model")
    translate.add_argument("--stream", action="store_true", help="print tokens as they come")
    translate.add_argument(
        "--attention", action="store_true", help="where the model looked for each character"
    )
    cli_connection.add_connection_options(translate)
    translate.add_argument("--timeout", type=float, default=30.0, help="seconds per call")
    translate.set_defaults(run=guarded(_run_translate))
