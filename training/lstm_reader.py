"""Train the LSTM digit reader and export it as `lstm_reader`: a sequence model that reads an
MNIST digit row by row, its LSTM state kept by the server between a sequence's requests.

    python -m deepserve.training.lstm_reader --data ../shared/data/mnist --out models

Each request carries one row (or a few) of a 28x28 digit; the answer is the reader's belief
after the rows so far, and after the last row it equals the whole-image answer. Offline (test
set only) it trains on the first 8,000 digits and reports accuracy on the last 2,000.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn
from torch.nn import functional as F

from .cli_args import add_common, add_download, parse
from .fit import fit
from .mnist_data import download_mnist, load_split
from .model_files import onnx_size_mb, write_model_card, write_report

NAME = "lstm_reader"
MEAN, STD = 0.1307, 0.3081
HIDDEN, LAYERS, EMBED = 128, 2, 96
ROWS = WIDTH = 28


class RowReader(nn.Module):
    """A row's 28 pixels embedded (linear + ReLU), a two-layer LSTM over the rows, a linear
    head on its last output: about 0.25 M parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(WIDTH, EMBED)
        self.lstm = nn.LSTM(EMBED, HIDDEN, LAYERS, batch_first=True, dropout=0.1)
        self.head = nn.Linear(HIDDEN, 10)

    def step(
        self, rows: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """uint8 rows [B, R, 28] and the state [B, layers, hidden] -> logits after the last
        of them and the new state (batch first: the server keeps it per sequence)."""
        x = (rows.float() / 255.0 - MEAN) / STD
        out, (h_out, c_out) = self.lstm(
            F.relu(self.embed(x)), (h.transpose(0, 1).contiguous(), c.transpose(0, 1).contiguous())
        )
        return self.head(out[:, -1]), h_out.transpose(0, 1), c_out.transpose(0, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The whole image at once: uint8 [B, 28, 28] -> logits [B, 10]."""
        zeros = images.new_zeros((images.shape[0], LAYERS, HIDDEN), dtype=torch.float32)
        return self.step(images, zeros, zeros)[0]


class StepGraph(nn.Module):
    """What is exported: one request's rows and the sequence's state in, belief and state out."""

    def __init__(self, reader: RowReader) -> None:
        super().__init__()
        self.reader = reader

    def forward(
        self, rows: torch.Tensor, h_in: torch.Tensor, c_in: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.reader.step(rows, h_in, c_in)


def _shift(batch: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Random translation by up to max_shift pixels (batch [B, 28, 28])."""
    padded = F.pad(batch, (max_shift,) * 4)
    dx, dy = torch.randint(0, 2 * max_shift + 1, (2,), generator=generator).tolist()
    return padded[:, dy : dy + ROWS, dx : dx + WIDTH]


def train(images: np.ndarray, labels: np.ndarray, epochs: int, seed: int) -> RowReader:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = RowReader()
    x = torch.from_numpy(images.copy())
    y = torch.from_numpy(labels.astype(np.int64))

    def batch_loss(index: torch.Tensor) -> torch.Tensor:
        batch = _shift(x[index], 2, generator)
        return F.cross_entropy(model(batch), y[index], label_smoothing=0.05)

    fit(model, len(x), batch_loss, epochs=epochs, generator=generator, batch_size=64,
        max_lr=4e-3, name=NAME)  # fmt: skip
    return model


def accuracy(model: RowReader, images: np.ndarray, labels: np.ndarray) -> float:
    with torch.no_grad():
        logits = model(torch.from_numpy(images.copy()))
    return float((logits.argmax(1).numpy() == labels).mean())


def export(model: RowReader, out: Path, max_batch_size: int) -> Path:
    model_dir = out / NAME
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    path = model_dir / "1" / "model.onnx"
    rows = torch.zeros((2, 1, WIDTH), dtype=torch.uint8)
    state = torch.zeros((2, LAYERS, HIDDEN))
    torch.onnx.export(
        StepGraph(model).eval(),  # a new module is in training mode, and export restores it
        (rows, state, state),
        str(path),
        input_names=["rows", "h_in", "c_in"],
        output_names=["logits", "h_out", "c_out"],
        dynamic_axes={
            "rows": {0: "batch", 1: "rows"},
            "h_in": {0: "batch"},
            "c_in": {0: "batch"},
            "logits": {0: "batch"},
            "h_out": {0: "batch"},
            "c_out": {0: "batch"},
        },
        opset_version=17,
        dynamo=False,
    )
    model.eval()
    (model_dir / "labels.txt").write_text("\n".join(str(d) for d in range(10)) + "\n")
    (model_dir / "config.pbtxt").write_text(config_text(max_batch_size))
    return path


def config_text(max_batch_size: int) -> str:
    return f"""name: "{NAME}"
platform: "onnxruntime_onnx"
max_batch_size: {max_batch_size}
input [ {{ name: "rows" data_type: TYPE_UINT8 dims: [ -1, {WIDTH} ] }} ]
output [ {{ name: "logits" data_type: TYPE_FP32 dims: [ 10 ] label_filename: "labels.txt" }} ]
sequence_batching {{
  max_sequence_idle_microseconds: 10000000
  oldest {{ max_candidate_sequences: 256 }}
  state [
    {{ input_name: "h_in" output_name: "h_out" data_type: TYPE_FP32 dims: [ {LAYERS}, {HIDDEN} ] }},
    {{ input_name: "c_in" output_name: "c_out" data_type: TYPE_FP32 dims: [ {LAYERS}, {HIDDEN} ] }}
  ]
}}
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
"""


def streamed_parity(model: RowReader, path: Path, images: np.ndarray) -> tuple[float, float]:
    """Row by row through the exported step graph (state carried as the server carries it)
    against PyTorch on the whole image: the largest logit difference, and the same with two
    rows per step."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        whole = model(torch.from_numpy(images.copy())).numpy()
    diffs = []
    for rows_per_step in (1, 2):
        h = np.zeros((len(images), LAYERS, HIDDEN), np.float32)
        c = np.zeros_like(h)
        for row in range(0, ROWS, rows_per_step):
            feeds = {"rows": images[:, row : row + rows_per_step], "h_in": h, "c_in": c}
            logits, h, c = session.run(None, feeds)
        diffs.append(float(np.abs(logits - whole).max()))
    return diffs[0], diffs[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common(parser, "one epoch on 512 digits, for tests")
    add_download(parser)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--max-batch-size", type=int, default=64)
    args = parse(parser, argv)

    folder = download_mnist(args.data) if args.download else args.data
    split = load_split(folder)
    print(f"data: {split.description}")
    started = time.perf_counter()
    train_images, train_labels = split.train_images, split.train_labels
    if args.quick:
        args.epochs, train_images, train_labels = 1, train_images[:512], train_labels[:512]
    model = train(train_images, train_labels, args.epochs, args.seed)
    held_out = accuracy(model, split.test_images, split.test_labels)
    seconds = time.perf_counter() - started
    print(f"held-out accuracy: {held_out:.4f} on {len(split.test_labels)} digits ({seconds:.0f} s)")
    path = export(model, args.out, args.max_batch_size)
    one_row, two_rows = streamed_parity(model, path, split.test_images[:256])
    print(f"exported {path}: streamed vs whole image max abs diff {one_row:.2e} / {two_rows:.2e}")
    report = {
        "model": NAME,
        "held_out_accuracy": held_out,
        "streamed_vs_whole_max_abs_diff": {"one_row": one_row, "two_rows": two_rows},
        "size_mb": onnx_size_mb(path),
        "data": split.description,
        "epochs": args.epochs,
        "seed": args.seed,
        "train_seconds": seconds,
    }
    model_dir = args.out / NAME
    write_report(model_dir, report)
    write_model_card(
        model_dir,
        f"{NAME}: an LSTM that reads a digit row by row",
        {
            "What": f"Each row's 28 pixels embedded ({EMBED} units, ReLU), a {LAYERS}-layer LSTM "
            f"of {HIDDEN} units over the rows, a linear head on its last output; trained from "
            "scratch. Served as a sequence model: the server keeps each sequence's LSTM state.",
            "Input / output": "`rows` uint8 [1, R, 28] per request (the next R rows of a white "
            'digit on black); `logits` fp32 [1, 10] after them (labels "0".."9"). State '
            f"`h_in`/`h_out` and `c_in`/`c_out` fp32 [{LAYERS}, {HIDDEN}], kept by the server "
            "(zeros at sequence_start).",
            "Data": f"MNIST ({split.description}); random shifts of up to 2 px while training.",
            "Command": f"`python -m deepserve.training.lstm_reader --data DIR --out models` "
            f"(epochs {args.epochs}, seed {args.seed}; --download fetches MNIST)",
            "Metrics": f"held-out accuracy {held_out:.4f} on {len(split.test_labels)} digits "
            "(the whole image read).",
            "Parity": "Row by row through ONNX Runtime, the state carried between runs, against "
            f"PyTorch reading the whole image, 256 held-out digits: max abs diff {one_row:.2e} "
            f"(one row a step), {two_rows:.2e} (two rows a step).",
            "Size": f"{onnx_size_mb(path):.2f} MB.",
        },
    )
    return 0 if max(one_row, two_rows) <= 1e-5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
