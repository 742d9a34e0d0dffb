"""A ResNet-50 for benchmarks: torchvision's architecture at 224x224, weights from a file when
given (a torchvision state dict), random otherwise. It is not trained here and not committed
(about 100 MB): one command makes it, so deepserve's figures can sit beside the ResNet-50
figures published for other servers.

    deepserve-train resnet50 --out models                 # random weights
    deepserve-train resnet50 --weights resnet50.pth --out models
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from . import fp16
from .cli_args import DEFAULT_DATA, add_fp16
from .export import UInt8ImageInput, export_onnx, image_classifier_spec, parity

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SIZE = 224
MAX_BATCH = 128
PREFERRED = (32, 64, 128)


def build(weights: Path | None) -> torch.nn.Module:
    net = torchvision.models.resnet50(weights=None)
    if weights is not None:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise SystemExit(f"{weights} is not a ResNet-50 state dict: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}")  # fmt: skip
    return UInt8ImageInput(net, IMAGENET_MEAN, IMAGENET_STD).eval()


def _serving_config(model_dir: Path) -> None:
    """Batch up to 128, preferring 32 / 64 / 128; TensorRT FP16 where it is installed."""
    path = model_dir / "config.pbtxt"
    config = text_format.Parse(path.read_text(), mc.ModelConfig())
    config.max_batch_size = MAX_BATCH
    config.dynamic_batching.preferred_batch_size[:] = list(PREFERRED)
    accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add(
        name="tensorrt"
    )
    accelerator.parameters["precision_mode"] = "FP16"
    accelerator.parameters["max_workspace_size_bytes"] = str(4 << 30)
    path.write_text(text_format.MessageToString(config))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models"), help="model repository")
    parser.add_argument("--weights", type=Path, default=None, help="torchvision state dict")
    parser.add_argument("--name", default="resnet50")
    parser.add_argument("--seed", type=int, default=0)
    add_fp16(parser)
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="MNIST IDX folder (for --fp16's check)"
    )
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    model = build(args.weights)
    labels = [f"class {i}" for i in range(1000)]
    spec = image_classifier_spec(args.name, SIZE, SIZE, 3, labels, MAX_BATCH)
    images = np.random.default_rng(args.seed).integers(0, 256, (2, SIZE, SIZE, 3), np.uint8)
    path = export_onnx(model, torch.from_numpy(images), spec, args.out)
    _serving_config(args.out / args.name)
    gap = parity(model, path, images)
    print(
        f"exported {path} ({path.stat().st_size / 2**20:.0f} MB, "
        f"{'weights from ' + str(args.weights) if args.weights else 'random weights'}) in "
        f"{time.perf_counter() - started:.0f} s; PyTorch vs ONNX Runtime max difference {gap:.2e}"
    )
    return fp16.after_export(args, args.out / args.name, 0)


if __name__ == "__main__":
    raise SystemExit(main())
