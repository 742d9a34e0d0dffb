"""Train the digit detector (SSD, light backbone) on digit scenes and export it as `ssd`.

    python -m deepserve.training.ssd --data ../shared/data/mnist --out models

Training scenes are made afresh each epoch from the training digits; the held-out scenes use
only held-out digits. Reports mAP@0.5 over the 10 digits on the held-out scenes (PyTorch and
ONNX Runtime), parity, and the cost of non-maximum suppression in the graph vs in the server.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from tritonclient.grpc import model_config_pb2 as mc

from . import fp16
from .cli_args import add_common, parse
from .detector import SIZE, DetectorExport, build_ssd
from .export import ExportSpec, TensorInfo, export_onnx
from .held_out import detection_map, detection_scenes, number_scenes
from .metrics import box_iou
from .mnist_data import load_split
from .model_files import (
    cpu_latency_ms,
    cpu_session,
    onnx_size_mb,
    size_and_speed,
    write_model_card,
    write_report,
)
from .number_scenes import NumberScene, make_number_scene
from .scenes import Scene, make_scene

LABELS = [str(d) for d in range(10)]
OUTPUTS = ["boxes", "scores", "classes", "count"]


def _batch(scenes: list[Scene | NumberScene], device: str):
    images = [
        torch.from_numpy(s.image).permute(2, 0, 1).float().div(255).to(device) for s in scenes
    ]
    targets = [
        {
            "boxes": torch.from_numpy(s.boxes).to(device),
            "labels": torch.from_numpy(s.labels + 1).to(device),
        }  # 0 is the background class
        for s in scenes
    ]
    return images, targets


def train(
    split,
    epochs: int,
    scenes_per_epoch: int,
    batch_size: int,
    seed: int,
    device: str,
    max_steps: int | None = None,
    number_share: float = 0.0,
) -> torch.nn.Module:
    """`number_share` of each batch are house-number scenes (digits side by side, which
    scattered digits never show), the rest scattered digits."""
    torch.manual_seed(seed)
    model = build_ssd().to(device)
    steps_per_epoch = scenes_per_epoch // batch_size
    total = max_steps or epochs * steps_per_epoch
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, 4e-3, total_steps=total, pct_start=0.1
    )
    model.train()
    with tqdm(total=total, desc="ssd", unit="step") as bar:
        for step in range(total):
            scene_seed = seed * 10_000_019 + step * batch_size
            numbers = round(batch_size * number_share)
            scenes: list[Scene | NumberScene] = [
                make_scene(split.train_images, split.train_labels, scene_seed + i)
                for i in range(batch_size - numbers)
            ]
            scenes += [
                make_number_scene(split.train_images, split.train_labels, scene_seed + i)
                for i in range(batch_size - numbers, batch_size)
            ]
            losses = model(*_batch(scenes, device))
            loss = sum(losses.values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            bar.update()
    return model.eval()


def _nms_numpy(boxes: np.ndarray, scores: np.ndarray, iou: float, threshold: float, k: int):
    """Per-class greedy NMS in numpy: what a server would do with an NMS-free graph."""
    kept = []
    for cls in range(scores.shape[1]):
        index = np.flatnonzero(scores[:, cls] > threshold)
        index = index[np.argsort(-scores[index, cls])][:200]  # top candidates, as in the graph
        while len(index):
            best = index[0]
            kept.append((scores[best, cls], cls, best))
            if len(index) == 1:
                break
            overlap = box_iou(boxes[best][None], boxes[index[1:]])[0]
            index = index[1:][overlap <= iou]
    kept.sort(key=lambda item: -item[0])
    return kept[:k]


def nms_placement(model: DetectorExport, scenes: list[Scene], folder: Path) -> dict[str, float]:
    """ms per image of NMS in the graph vs a graph without NMS followed by numpy NMS."""
    no_nms = DetectorExport.__new__(DetectorExport)
    no_nms.__dict__.update(model.__dict__)
    no_nms.nms_in_graph = False
    path = folder / "ssd_no_nms.onnx"
    example = torch.from_numpy(np.stack([s.image for s in scenes[:2]]))
    torch.onnx.export(
        no_nms,
        (example,),
        str(path),
        input_names=["image"],
        output_names=["boxes", "scores"],
        opset_version=17,
        dynamo=False,
        dynamic_axes={"image": {0: "batch"}, "boxes": {0: "batch"}, "scores": {0: "batch"}},
    )
    images = np.stack([s.image for s in scenes[:32]])
    graph = cpu_session(folder / "model.onnx")
    plain = cpu_session(path)
    result = {}
    for batch in (1, 8):
        feed = images[:batch]
        graph.run(None, {"image": feed})
        plain.run(None, {"image": feed})
        start = time.perf_counter()
        for _ in range(10):
            graph.run(None, {"image": feed})
        result[f"nms_in_graph_ms_per_image_b{batch}"] = (time.perf_counter() - start) * 100 / batch
        start = time.perf_counter()
        for _ in range(10):
            boxes, scores = plain.run(None, {"image": feed})
            for i in range(batch):
                _nms_numpy(
                    boxes[i], scores[i], model.iou, model.score_threshold, model.max_detections
                )
        result[f"nms_in_server_ms_per_image_b{batch}"] = (time.perf_counter() - start) * 100 / batch
        result["no_nms_output_bytes_per_image"] = float(boxes[0].nbytes + scores[0].nbytes)
    path.unlink()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common(parser, "a few steps, for tests")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--scenes-per-epoch", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--held-out", type=int, default=500, help="held-out scenes to evaluate")
    parser.add_argument(
        "--number-share",
        type=float,
        default=0.25,
        help="share of each batch that are house-number scenes (read_number reads them)",
    )
    args = parse(parser, argv)
    if args.quick:
        args.held_out = 8

    split = load_split(args.data)
    started = time.perf_counter()
    model = train(
        split,
        args.epochs,
        args.scenes_per_epoch,
        args.batch_size,
        args.seed,
        args.device,
        max_steps=3 if args.quick else None,
        number_share=args.number_share,
    ).cpu()
    train_seconds = time.perf_counter() - started
    export = DetectorExport(model).eval()
    scenes = detection_scenes(split, args.held_out)

    def run_torch(images: np.ndarray):
        with torch.no_grad():
            return [t.numpy() for t in export(torch.from_numpy(images))]

    torch_map, _ = detection_map(run_torch, scenes)
    spec = ExportSpec(
        name="ssd",
        inputs=[TensorInfo("image", mc.TYPE_UINT8, [SIZE, SIZE, 3])],
        outputs=[
            TensorInfo("boxes", mc.TYPE_FP32, [export.max_detections, 4]),
            TensorInfo("scores", mc.TYPE_FP32, [export.max_detections]),
            TensorInfo(
                "classes", mc.TYPE_INT64, [export.max_detections], label_filename="labels.txt"
            ),
            TensorInfo("count", mc.TYPE_INT64, []),
        ],
        max_batch_size=32,
        parameters={
            "task": "detection",
            "image_height": str(SIZE),
            "image_width": str(SIZE),
            "image_channels": "3",
            "resize_mode": "stretch",
            "box_format": "xyxy_pixels",
            "score_threshold": "0.3",
            "max_detections": str(export.max_detections),
        },
        labels=LABELS,
    )
    path = export_onnx(export, torch.from_numpy(scenes[0].image[None]), spec, args.out)
    session = cpu_session(path)
    onnx_map, per_class = detection_map(lambda images: session.run(None, {"image": images}), scenes)
    numbers = number_scenes(split, args.held_out)
    number_map, _ = detection_map(lambda images: session.run(None, {"image": images}), numbers)
    # Parity: same detections (count, classes) and boxes / scores within 1e-4 on held-out scenes.
    images = np.stack([s.image for s in scenes[:16]])
    got, expected = session.run(None, {"image": images}), run_torch(images)
    same_detections = all(np.array_equal(got[i], expected[i]) for i in (2, 3))
    diff = max(float(np.abs(got[i] - expected[i]).max()) for i in (0, 1))
    latency = cpu_latency_ms(path, images, [1, 8, 32])
    placement = {} if args.quick else nms_placement(export, scenes, path.parent)
    report = {
        "model": "ssd",
        "held_out_scenes": len(scenes),
        "map50_onnx": onnx_map,
        "map50_torch": torch_map,
        "map50_number_scenes": number_map,
        "ap50_per_digit": per_class,
        "parity_max_abs_diff": diff,
        "parity_same_detections": same_detections,
        "size_mb": onnx_size_mb(path),
        "cpu_latency_ms": latency,
        "nms_placement": placement,
        "train_seconds": train_seconds,
        "epochs": args.epochs,
        "number_share": args.number_share,
        "seed": args.seed,
        "quick": args.quick,
        "data": split.description,
    }
    model_dir = args.out / "ssd"
    write_report(model_dir, report)
    write_model_card(
        model_dir,
        "ssd: digit detector",
        {
            "What": "torchvision SSD with a light 4-level convolutional backbone (1.1 M "
            "parameters), 320x320 RGB input, anchors of aspect 1, 2 and 3; box decoding and ONNX "
            "NonMaxSuppression (IoU 0.45, scores above 0.05, top 100 per image) in the graph.",
            "Input / output": "`image` uint8 [N, 320, 320, 3]; `boxes` fp32 [N, 100, 4] "
            "(x1 y1 x2 y2 pixels of the 320x320 input), `scores` fp32 [N, 100], `classes` int64 "
            "[N, 100] (digit), `count` int64 [N]; rows past `count` are zero.",
            "Data": f"Digit scenes (MNIST digits 20-90 px on 320x320 canvases) and, as "
            f"{args.number_share:.0%} of each batch, house numbers (2 to 6 digits side by side), "
            f"made afresh each step from the training digits ({split.description}); evaluated "
            f"on {len(scenes)} held-out scenes of held-out digits.",
            "Command": "`python -m deepserve.training.ssd --data DIR --out models` "
            f"(epochs {args.epochs}, number share {args.number_share}, seed {args.seed})",
            "Metrics": f"mAP@0.5 over the 10 digits: {onnx_map:.4f} (ONNX Runtime), "
            f"{torch_map:.4f} (PyTorch); on {len(numbers)} held-out house numbers "
            f"{number_map:.4f}.",
            "Parity": f"PyTorch vs ONNX Runtime on 16 held-out scenes: same detections "
            f"{same_detections}, max abs diff of boxes and scores {diff:.2e}.",
            "Size and speed": size_and_speed(path, latency, 1),
            "Where NMS runs": "In the graph. Measured (ms per image): "
            + ", ".join(f"{k} {v:.2f}" for k, v in placement.items())
            + ". Without NMS the model would send every anchor's boxes and scores "
            "(the bytes above per image) and the server would run NMS in Python.",
        },
    )
    print(json.dumps(report, indent=2))
    return fp16.after_export(args, model_dir, 0)


if __name__ == "__main__":
    raise SystemExit(main())
