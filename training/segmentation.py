"""Train the digit segmenter (LR-ASPP, MobileNetV3-Small) on digit-scene masks and export it as
`segmentation`.

    python -m deepserve.training.segmentation --data ../shared/data/mnist --out models

Trains on random crops of scenes made afresh from the training digits (full resolution, so the
strokes stay as thin as they are), evaluates mean IoU over the 11 classes on whole held-out
scenes of held-out digits, exports a graph that takes any image size and returns the argmax mask.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from tqdm import tqdm
from tritonclient.grpc import model_config_pb2 as mc

from . import fp16
from .cli_args import add_common, parse
from .export import ExportSpec, TensorInfo, export_onnx
from .held_out import segmentation_miou, segmentation_scenes
from .mnist_data import load_split
from .model_files import (
    cpu_latency_ms,
    cpu_session,
    onnx_size_mb,
    size_and_speed,
    write_model_card,
    write_report,
)
from .scenes import SIZE, Scene, make_scene
from .segmenter import SegmenterExport, build_lraspp, loss_fn, normalised

LABELS = ["background"] + [str(d) for d in range(10)]


def _crop_origin(scene: Scene, crop: int, rng: np.random.Generator) -> tuple[int, int]:
    """Mostly around a digit (so crops carry strokes, not just background), sometimes anywhere."""
    if len(scene.boxes) and rng.random() < 0.8:
        x1, y1, x2, y2 = scene.boxes[rng.integers(len(scene.boxes))]
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        x = int(np.clip(cx - rng.uniform(0.25, 0.75) * crop, 0, SIZE - crop))
        y = int(np.clip(cy - rng.uniform(0.25, 0.75) * crop, 0, SIZE - crop))
        return y, x
    y, x = rng.integers(0, SIZE - crop + 1, 2)
    return int(y), int(x)


def _crops(scenes: list[Scene], crop: int, rng: np.random.Generator):
    images, masks = [], []
    for scene in scenes:
        y, x = _crop_origin(scene, crop, rng)
        images.append(scene.image[y : y + crop, x : x + crop])
        masks.append(scene.mask[y : y + crop, x : x + crop])
    images_t = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(255)
    return normalised(images_t), torch.from_numpy(np.stack(masks).astype(np.int64))


def train(
    split,
    epochs: int,
    scenes_per_epoch: int,
    batch_size: int,
    crop: int,
    seed: int,
    device: str,
    max_steps: int | None = None,
) -> torch.nn.Module:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    # channels_last: oneDNN's faster layout for depthwise convolutions on the CPU.
    model = build_lraspp().to(device, memory_format=torch.channels_last)
    total = max_steps or epochs * (scenes_per_epoch // batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, 5e-3, total_steps=total, pct_start=0.1
    )
    model.train()
    with tqdm(total=total, desc="segmentation", unit="step") as bar:
        for step in range(total):
            base = seed * 10_000_019 + step * batch_size
            scenes = [
                make_scene(split.train_images, split.train_labels, base + i)
                for i in range(batch_size)
            ]
            images, masks = _crops(scenes, crop, rng)
            images = images.to(device, memory_format=torch.channels_last)
            loss = loss_fn(model(images)["out"], masks.to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            bar.update()
    return model.to(memory_format=torch.contiguous_format).eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common(parser, "a few steps, for tests")
    parser.add_argument("--epochs", type=int, default=64)
    parser.add_argument("--scenes-per-epoch", type=int, default=3200)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--crop", type=int, default=160, help="training crop size, pixels")
    parser.add_argument("--held-out", type=int, default=200, help="held-out scenes to evaluate")
    args = parse(parser, argv)
    if args.quick:
        args.held_out = 4

    split = load_split(args.data)
    started = time.perf_counter()
    model = train(
        split,
        args.epochs,
        args.scenes_per_epoch,
        args.batch_size,
        args.crop,
        args.seed,
        args.device,
        max_steps=3 if args.quick else None,
    ).cpu()
    train_seconds = time.perf_counter() - started
    export = SegmenterExport(model).eval()
    scenes = segmentation_scenes(split, args.held_out)

    def run_torch(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return export(torch.from_numpy(images)).numpy()

    torch_miou, _ = segmentation_miou(run_torch, scenes)
    spec = ExportSpec(
        name="segmentation",
        inputs=[TensorInfo("image", mc.TYPE_UINT8, [-1, -1, 3])],
        outputs=[TensorInfo("mask", mc.TYPE_UINT8, [-1, -1], label_filename="labels.txt")],
        max_batch_size=16,
        parameters={
            "task": "segmentation",
            "image_height": str(SIZE),
            "image_width": str(SIZE),
            "image_channels": "3",
            "resize_mode": "stretch",
            "mask_labels": "background,0,1,2,3,4,5,6,7,8,9",
        },
        labels=LABELS,
        dynamic_axes={
            "image": {0: "batch", 1: "height", 2: "width"},
            "mask": {0: "batch", 1: "height", 2: "width"},
        },
    )
    path = export_onnx(export, torch.from_numpy(scenes[0].image[None]), spec, args.out)
    session = cpu_session(path)
    onnx_miou, per_class = segmentation_miou(
        lambda images: session.run(None, {"image": images})[0], scenes
    )
    images = np.stack([s.image for s in scenes[:8]])
    got, expected = session.run(None, {"image": images})[0], run_torch(images)
    identical = float((got == expected).mean())
    with torch.no_grad():
        logits_t = export.logits(torch.from_numpy(images[:2])).numpy()
    latency = cpu_latency_ms(path, images, [1, 8])
    report = {
        "model": "segmentation",
        "held_out_scenes": len(scenes),
        "miou_onnx": onnx_miou,
        "miou_torch": torch_miou,
        "iou_per_class": per_class,
        "parity_identical_pixels": identical,
        "logit_range": float(np.abs(logits_t).max()),
        "size_mb": onnx_size_mb(path),
        "cpu_latency_ms_320": latency,
        "train_seconds": train_seconds,
        "epochs": args.epochs,
        "seed": args.seed,
        "quick": args.quick,
        "data": split.description,
    }
    model_dir = args.out / "segmentation"
    write_report(model_dir, report)
    write_model_card(
        model_dir,
        "segmentation: digit segmenter",
        {
            "What": "torchvision LR-ASPP on a MobileNetV3-Small backbone (dilated, 1.1 M "
            "parameters, trained from scratch), low-level branch at stride 4; argmax in the graph, "
            "after taking the loss's background weight back out of the scores.",
            "Input / output": "`image` uint8 [N, H, W, 3], any H and W; `mask` uint8 [N, H, W]: 0 "
            "background, 1 + d for digit d (labels.txt in that order).",
            "Data": f"Random {args.crop}x{args.crop} crops of digit scenes made afresh from the "
            f"training digits ({split.description}); evaluated on {len(scenes)} whole "
            "320x320 held-out scenes of held-out digits.",
            "Command": "`python -m deepserve.training.segmentation --data DIR --out models` "
            f"(epochs {args.epochs}, seed {args.seed})",
            "Metrics": f"mean IoU over the 11 classes: {onnx_miou:.4f} (ONNX Runtime), "
            f"{torch_miou:.4f} (PyTorch).",
            "Parity": f"PyTorch vs ONNX Runtime on 8 held-out scenes: {identical:.6f} of mask "
            "pixels identical.",
            "Size and speed": size_and_speed(path, latency, 1, at=" at 320x320"),
        },
    )
    print(json.dumps(report, indent=2))
    return fp16.after_export(args, model_dir, 0)


if __name__ == "__main__":
    raise SystemExit(main())
