"""Export the pretrained CIFAR-10 ResNet-20, unchanged, as the natural-image classifier
`cifar10_resnet20` (uint8 NHWC 32x32 RGB in, 10 logits out).

    python -m deepserve.training.cifar10_resnet20 \
        --weights ../shared/data/pretrained/resnet20-cifar10-12fca82f.th --out models
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from . import fp16
from .cli_args import DEFAULT_DATA, add_fp16
from .export import UInt8ImageInput, export_onnx, image_classifier_spec, parity
from .model_files import (
    cpu_latency_ms,
    onnx_size_mb,
    size_and_speed,
    write_model_card,
    write_report,
)
from .resnet_cifar import CIFAR10_CLASSES, CIFAR_MEAN, CIFAR_STD, load_pretrained

DEFAULT_WEIGHTS = Path("../shared/data/pretrained/resnet20-cifar10-12fca82f.th")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--weights",
        type=Path,
        default=DEFAULT_WEIGHTS,
        help="the published ResNet-20 CIFAR-10 checkpoint (.th)",
    )
    parser.add_argument("--out", type=Path, default=Path("models"), help="model repository")
    parser.add_argument("--max-batch-size", type=int, default=64)
    add_fp16(parser)
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="MNIST IDX folder (for --fp16's check)"
    )
    parser.add_argument(
        "--cifar10", type=Path, help="CIFAR-10's test_batch.bin folder: --fp16 measures accuracy"
    )
    args = parser.parse_args(argv)

    net, reported_top1 = load_pretrained(args.weights)
    model = UInt8ImageInput(net, CIFAR_MEAN, CIFAR_STD).eval()
    spec = image_classifier_spec(
        "cifar10_resnet20", 32, 32, 3, CIFAR10_CLASSES, args.max_batch_size
    )
    images = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    path = export_onnx(model, torch.from_numpy(images[:2]), spec, args.out)
    diff = parity(model, path, images)
    print(
        f"exported {path} (published top-1 {reported_top1:.2f} %): "
        f"PyTorch vs ONNX Runtime max abs diff {diff:.2e}"
    )
    latency = cpu_latency_ms(path, images, [1, 64])
    report = {
        "model": "cifar10_resnet20",
        "published_top1": reported_top1,
        "parity_max_abs_diff": diff,
        "size_mb": onnx_size_mb(path),
        "cpu_latency_ms": latency,
        "source": str(args.weights.name),
    }
    model_dir = args.out / spec.name
    write_report(model_dir, report)
    write_model_card(
        model_dir,
        "cifar10_resnet20: natural-image classifier (CIFAR-10)",
        {
            "What": "ResNet-20 for 32x32 images (He et al. 2016; 16/32/64 channels, option-A "
            "shortcuts, 0.27 M parameters), the published CIFAR-10 weights exported unchanged.",
            "Input / output": "`image` uint8 [N, 32, 32, 3] RGB; `logits` fp32 [N, 10]: airplane, "
            "automobile, bird, cat, deer, dog, frog, horse, ship, truck.",
            "Data": "CIFAR-10, as trained by its authors (akamaster/pytorch_resnet_cifar10, BSD "
            "2-Clause, (c) 2018 Yerlan Idelbayev; see NOTICE).",
            "Command": "`python -m deepserve.training.cifar10_resnet20 --weights "
            "resnet20-cifar10-12fca82f.th --out models`",
            "Metrics": f"top-1 {reported_top1:.2f} % on CIFAR-10 as published (the CIFAR-10 "
            "test set is not bundled, so it is not re-measured here).",
            "Parity": f"PyTorch vs ONNX Runtime on 64 random images: max abs diff {diff:.2e}.",
            "Size and speed": size_and_speed(path, latency),
        },
    )
    return fp16.after_export(args, model_dir, 0 if diff <= 1e-4 else 1)


if __name__ == "__main__":
    raise SystemExit(main())
