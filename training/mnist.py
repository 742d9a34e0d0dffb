"""Train the MNIST digit classifier and export it to the model repository as `mnist`.

    python -m deepserve.training.mnist --data ../shared/data/mnist --out models

Offline (test set only) it trains on the first 8,000 digits and reports accuracy on the last
2,000; with the 60k training files in --data it uses the standard split. --download fetches the
public files with torchvision where a machine has internet.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from . import fp16
from .cli_args import add_common, add_download, parse
from .export import UInt8ImageInput, export_onnx, image_classifier_spec, parity
from .held_out import NUMBER_SEED
from .mnist_data import download_mnist, load_split
from .model_files import (
    cpu_latency_ms,
    onnx_size_mb,
    size_and_speed,
    write_model_card,
    write_report,
)
from .number_crops import scene_crops

MEAN, STD = (0.1307,), (0.3081,)  # MNIST pixel statistics
LABELS = [str(d) for d in range(10)]


class DigitNet(nn.Module):
    """Two conv blocks and a small head: about 0.4 M parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.3),
            nn.Linear(64 * 7 * 7, 128),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Linear(128, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _shift(batch: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Random translation by up to max_shift pixels: cheap augmentation for a small train set."""
    padded = F.pad(batch, (max_shift,) * 4)
    dx, dy = torch.randint(0, 2 * max_shift + 1, (2,), generator=generator).tolist()
    return padded[:, :, dy : dy + batch.shape[2], dx : dx + batch.shape[3]]


def train(
    images: np.ndarray,
    labels: np.ndarray,
    epochs: int,
    seed: int,
    batch_size: int = 64,
    device: str = "cpu",
) -> nn.Module:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = UInt8ImageInput(DigitNet(), MEAN, STD).to(device)
    x = torch.from_numpy(images[..., None].copy())  # uint8 NHWC
    y = torch.from_numpy(labels.astype(np.int64))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * ((len(x) + batch_size - 1) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    for epoch in tqdm(range(epochs), desc="mnist", unit="epoch"):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for start in range(0, len(x), batch_size):
            index = order[start : start + batch_size]
            batch = _shift(x[index].permute(0, 3, 1, 2), 2, generator).permute(0, 2, 3, 1)
            loss = F.cross_entropy(model(batch.to(device)), y[index].to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(index)
        tqdm.write(f"epoch {epoch + 1}/{epochs}: loss {total / len(x):.4f}")
    return model.eval()


def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    with torch.no_grad():
        logits = model(torch.from_numpy(images[..., None].copy()))
    return float((logits.argmax(1).numpy() == labels).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common(parser, "one epoch on 512 digits, for tests")
    add_download(parser)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument(
        "--scene-crops",
        type=int,
        default=6000,
        help="house-number scenes (of training digits) whose digits, cut out as the read_number "
        "pipeline cuts them, join the training set; 0 for MNIST alone",
    )
    args = parse(parser, argv)

    folder = download_mnist(args.data) if args.download else args.data
    split = load_split(folder)
    print(f"data: {split.description}")
    started = time.perf_counter()
    train_images, train_labels = split.train_images, split.train_labels
    if args.quick:
        args.epochs, train_images, train_labels = 1, train_images[:512], train_labels[:512]
        args.scene_crops = min(args.scene_crops, 16)
    if args.scene_crops:
        crops, crop_labels = scene_crops(
            split.train_images, split.train_labels, args.scene_crops, args.seed + 1
        )
        print(f"{len(crops)} digits cut from {args.scene_crops} house-number scenes")
        train_images = np.concatenate([train_images, crops])
        train_labels = np.concatenate([train_labels, crop_labels])
    model = train(train_images, train_labels, args.epochs, args.seed, device=args.device).cpu()
    held_out = accuracy(model, split.test_images, split.test_labels)
    test_crops, test_crop_labels = scene_crops(
        split.test_images, split.test_labels, 32 if args.quick else 500, NUMBER_SEED
    )
    crop_accuracy = accuracy(model, test_crops, test_crop_labels)
    print(
        f"held-out accuracy: {held_out:.4f} on {len(split.test_labels)} digits "
        f"({time.perf_counter() - started:.0f} s); on {len(test_crops)} digits cut from "
        f"held-out house numbers: {crop_accuracy:.4f}"
    )

    spec = image_classifier_spec("mnist", 28, 28, 1, LABELS, args.max_batch_size)
    # A step of the read_number pipeline: its threads sleep rather than spin between
    # operators, leaving the cores to the detector's (1.16x the pipeline on two cores).
    spec.parameters["intra_op_spinning"] = "0"
    example = torch.from_numpy(split.test_images[:2, ..., None].copy())
    path = export_onnx(model, example, spec, args.out)
    diff = parity(model, path, split.test_images[:256, ..., None].copy())
    print(f"exported {path}: PyTorch vs ONNX Runtime max abs diff {diff:.2e}")
    latency = cpu_latency_ms(path, split.test_images[:64, ..., None].copy(), [1, 64])
    report = {
        "model": "mnist",
        "held_out_accuracy": held_out,
        "number_crop_accuracy": crop_accuracy,
        "number_crops": len(test_crops),
        "scene_crops_scenes": args.scene_crops,
        "parity_max_abs_diff": diff,
        "size_mb": onnx_size_mb(path),
        "cpu_latency_ms": latency,
        "data": split.description,
        "epochs": args.epochs,
        "seed": args.seed,
    }
    model_dir = args.out / "mnist"
    write_report(model_dir, report)
    write_model_card(
        model_dir,
        "mnist: handwritten digit classifier",
        {
            "What": "A small CNN (four 3x3 convolutions with batch norm, two max-pools, a 128-unit "
            "head with dropout; 0.4 M parameters), trained from scratch.",
            "Input / output": "`image` uint8 [N, 28, 28, 1] (white digit on black, as MNIST); "
            '`logits` fp32 [N, 10], labels "0".."9".',
            "Data": f"MNIST ({split.description}) and the digits of {args.scene_crops} "
            "house-number scenes of training digits, cut out by the read_number pipeline's "
            "`digit_crops` graph from slightly moved boxes; random shifts of up to 2 px while "
            "training.",
            "Command": "`python -m deepserve.training.mnist --data DIR --out models` "
            f"(epochs {args.epochs}, seed {args.seed}; --download fetches MNIST)",
            "Metrics": f"held-out accuracy {held_out:.4f} on {len(split.test_labels)} digits; "
            f"{crop_accuracy:.4f} on {len(test_crops)} digits cut from held-out house numbers.",
            "Parity": f"PyTorch vs ONNX Runtime on 256 held-out digits: max abs diff {diff:.2e}.",
            "Size and speed": size_and_speed(path, latency),
        },
    )
    return fp16.after_export(args, model_dir, 0 if diff <= 1e-4 else 1)


if __name__ == "__main__":
    raise SystemExit(main())
