"""Transfer learning: a pretrained ResNet, new head, fine-tuned on few labels; exported as
`resnet_transfer`, with the same network trained from scratch on the same labels for comparison.

    python -m deepserve.training.resnet_transfer --data ../shared/data/mnist --out models

Offline the backbone is the CIFAR-10 ResNet-20 (--weights PATH to its checkpoint). Where a
machine has internet, `--arch resnet18 --weights imagenet` (or resnet50) takes torchvision's
ImageNet weights, or `--weights FILE` a local state dict. Default target: MNIST digits with only
1,000 labelled images, resized to 32x32 RGB; accuracy on the 2,000 held-out digits.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from . import fp16
from .cli_args import add_common, parse
from .export import UInt8ImageInput, export_onnx, image_classifier_spec, parity
from .mnist_data import digits_as, load_split
from .model_files import (
    cpu_latency_ms,
    onnx_size_mb,
    size_and_speed,
    write_model_card,
    write_report,
)
from .resnet_cifar import CIFAR_MEAN, CIFAR_STD, ResNetCifar, load_pretrained

DEFAULT_WEIGHTS = Path("../shared/data/pretrained/resnet20-cifar10-12fca82f.th")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LABELS = [str(d) for d in range(10)]
SIDE = 32


def to_rgb32(images: np.ndarray) -> np.ndarray:
    """[N, 28, 28] gray digits -> [N, 32, 32, 3] uint8 RGB, as the pretrained network saw."""
    return digits_as(images, SIDE, SIDE, 3)


def build(arch: str, weights: str | None) -> tuple[nn.Module, list[nn.Module], tuple, tuple]:
    """The network with a new 10-class head, its stages (for freezing), and its normalisation."""
    if arch == "resnet20":
        if weights:
            net, _ = load_pretrained(Path(weights))
        else:
            net = ResNetCifar()
        net.linear = nn.Linear(64, 10)
        stages = [nn.Sequential(net.conv1, net.bn1), net.layer1, net.layer2, net.layer3]
        return net, stages, CIFAR_MEAN, CIFAR_STD
    import torchvision

    builder = getattr(torchvision.models, arch)
    if weights == "imagenet":
        net = builder(weights="IMAGENET1K_V1")  # downloads where there is internet
    else:
        net = builder(weights=None)
        if weights:
            net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    net.fc = nn.Linear(net.fc.in_features, 10)
    stages = [nn.Sequential(net.conv1, net.bn1), net.layer1, net.layer2, net.layer3, net.layer4]
    return net, stages, IMAGENET_MEAN, IMAGENET_STD


def fine_tune(
    model: nn.Module,
    stages: list[nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    frozen_epochs: int,
    freeze: int,
    seed: int,
    lr: float,
    label: str,
) -> nn.Module:
    """Train the head alone for `frozen_epochs` (the first `freeze` stages stay frozen
    throughout), then everything not frozen at a lower rate."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    for epoch in tqdm(range(epochs), desc=label, unit="epoch"):
        warm = epoch < frozen_epochs
        for index, stage in enumerate(stages):
            for p in stage.parameters():
                p.requires_grad = not (warm or index < freeze)
        if epoch in (0, frozen_epochs):
            params = [p for p in model.parameters() if p.requires_grad]
            optimizer = torch.optim.AdamW(params, lr=lr if warm else lr / 3, weight_decay=1e-4)
        model.train()
        # Frozen stages keep their batch-norm statistics too.
        for index, stage in enumerate(stages):
            if warm or index < freeze:
                stage.eval()
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 64):
            batch = order[start : start + 64]
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    with torch.no_grad():
        predicted = model(torch.from_numpy(images)).argmax(1).numpy()
    return float((predicted == labels).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common(parser, "one epoch on 64 images, for tests")
    parser.add_argument("--arch", choices=["resnet20", "resnet18", "resnet50"], default="resnet20")
    parser.add_argument(
        "--weights",
        default=str(DEFAULT_WEIGHTS),
        help="checkpoint file, or 'imagenet' (torchvision, needs internet)",
    )
    parser.add_argument("--labels", type=int, default=1000, help="labelled training images")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument(
        "--frozen-epochs", type=int, default=3, help="epochs that train the new head alone"
    )
    parser.add_argument(
        "--freeze",
        type=int,
        default=0,
        help="leading stages (stem, layer1, ...) kept frozen throughout",
    )
    parser.add_argument("--lr", type=float, default=3e-3)
    args = parse(parser, argv)
    if args.quick:
        args.labels, args.epochs, args.frozen_epochs = 64, 1, 1

    split = load_split(args.data)
    train_x = to_rgb32(split.train_images[: args.labels])
    train_y = torch.from_numpy(split.train_labels[: args.labels].astype(np.int64))
    test_x = to_rgb32(split.test_images)
    started = time.perf_counter()
    results = {}
    models = {}
    for name, weights in (("transfer", args.weights), ("scratch", None)):
        net, stages, mean, std = build(args.arch, weights)
        model = UInt8ImageInput(net, mean, std)
        frozen = args.frozen_epochs if weights else 0
        model = fine_tune(
            model,
            stages,
            torch.from_numpy(train_x),
            train_y,
            args.epochs,
            frozen,
            args.freeze if weights else 0,
            args.seed,
            args.lr,
            name,
        )
        results[name] = accuracy(model, test_x, split.test_labels)
        models[name] = model
        print(f"{name}: held-out accuracy {results[name]:.4f}")
    train_seconds = time.perf_counter() - started

    spec = image_classifier_spec("resnet_transfer", SIDE, SIDE, 3, LABELS, 64)
    model = models["transfer"]
    path = export_onnx(model, torch.from_numpy(test_x[:2]), spec, args.out)
    diff = parity(model, path, test_x[:256])
    latency = cpu_latency_ms(path, test_x, [1, 64])
    report = {
        "model": "resnet_transfer",
        "arch": args.arch,
        "weights": Path(str(args.weights)).name,
        "labelled_images": args.labels,
        "held_out": len(test_x),
        "held_out_accuracy_transfer": results["transfer"],
        "held_out_accuracy_scratch": results["scratch"],
        "parity_max_abs_diff": diff,
        "size_mb": onnx_size_mb(path),
        "cpu_latency_ms": latency,
        "epochs": args.epochs,
        "frozen_epochs": args.frozen_epochs,
        "freeze": args.freeze,
        "seed": args.seed,
        "train_seconds": train_seconds,
        "quick": args.quick,
        "data": split.description,
    }
    model_dir = args.out / "resnet_transfer"
    write_report(model_dir, report)
    write_model_card(
        model_dir,
        "resnet_transfer: ResNet transfer learning on few digits",
        {
            "What": f"{args.arch} pretrained ({report['weights']}), head replaced by a 10-digit "
            f"linear layer, fine-tuned: {args.frozen_epochs} epochs head only, then all "
            f"stages past the first {args.freeze}.",
            "Input / output": "`image` uint8 [N, 32, 32, 3] (digits resized, gray in RGB); "
            "`logits` fp32 [N, 10].",
            "Data": f"{args.labels} labelled MNIST digits ({split.description}); accuracy on the "
            f"{len(test_x)} held-out digits.",
            "Command": "`python -m deepserve.training.resnet_transfer --data DIR --out models` "
            f"(epochs {args.epochs}, seed {args.seed})",
            "Metrics": f"held-out accuracy: transfer {results['transfer']:.4f}, the same network "
            f"from scratch on the same labels {results['scratch']:.4f}.",
            "Parity": f"PyTorch vs ONNX Runtime on 256 held-out digits: max abs diff {diff:.2e}.",
            "Size and speed": size_and_speed(path, latency),
        },
    )
    print(json.dumps(report, indent=2))
    return fp16.after_export(args, model_dir, 0 if diff <= 1e-4 else 1)


if __name__ == "__main__":
    raise SystemExit(main())
