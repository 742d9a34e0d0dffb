"""Export rules shared by every model family.

Models take uint8 NHWC images and normalise inside the graph (cast first), have a dynamic batch,
named inputs and outputs, are one .onnx file that passes onnx.checker, and come with a Triton
config.pbtxt whose `parameters` carry the task facts the server's pre/post-processing reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from google.protobuf import text_format
from torch import nn
from tritonclient.grpc import model_config_pb2 as mc

from .model_files import cpu_session

OPSET = 17


class UInt8ImageInput(nn.Module):
    """uint8 [N, H, W, C] -> float, /255, (x - mean) / std, NCHW -> the wrapped network."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.to(torch.float32).permute(0, 3, 1, 2) / 255.0
        return self.net((x - self.mean) / self.std)


@dataclass(frozen=True)
class TensorInfo:
    name: str
    data_type: int
    dims: list[int]
    label_filename: str = ""


@dataclass
class ExportSpec:
    name: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    max_batch_size: int
    parameters: dict[str, str] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    dynamic_axes: dict[str, dict[int, str]] | None = None
    """Variable dimensions per tensor; None means a variable batch on every tensor."""


def image_classifier_spec(
    name: str, height: int, width: int, channels: int, labels: list[str], max_batch_size: int
) -> ExportSpec:
    """The spec every image classifier shares: uint8 NHWC `image` in, fp32 `logits` out."""
    return ExportSpec(
        name=name,
        inputs=[TensorInfo("image", mc.TYPE_UINT8, [height, width, channels])],
        outputs=[TensorInfo("logits", mc.TYPE_FP32, [len(labels)], label_filename="labels.txt")],
        max_batch_size=max_batch_size,
        parameters={
            "task": "classification",
            "image_height": str(height),
            "image_width": str(width),
            "image_channels": str(channels),
            "resize_mode": "stretch",
            "output_kind": "logits",
        },
        labels=labels,
    )


def export_onnx(
    model: nn.Module, example: torch.Tensor, spec: ExportSpec, repository: Path, version: int = 1
) -> Path:
    """Write <repository>/<name>/<version>/model.onnx, config.pbtxt and labels; check the file."""
    model_dir = repository / spec.name
    path = model_dir / str(version) / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    input_names = [t.name for t in spec.inputs]
    output_names = [t.name for t in spec.outputs]
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=input_names,
        output_names=output_names,
        dynamic_axes=spec.dynamic_axes or {n: {0: "batch"} for n in input_names + output_names},
        opset_version=OPSET,
        dynamo=False,
    )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    write_config(spec, model_dir)
    return path


def write_config(spec: ExportSpec, model_dir: Path) -> None:
    config = mc.ModelConfig(
        name=spec.name, platform="onnxruntime_onnx", max_batch_size=spec.max_batch_size
    )
    for tensor in spec.inputs:
        config.input.add(name=tensor.name, data_type=tensor.data_type, dims=tensor.dims)
    for tensor in spec.outputs:
        config.output.add(
            name=tensor.name,
            data_type=tensor.data_type,
            dims=tensor.dims,
            label_filename=tensor.label_filename,
        )
    for key, value in spec.parameters.items():
        config.parameters[key].string_value = value
    # Batch whatever queued while the instance was busy; never wait for more.
    config.dynamic_batching.max_queue_delay_microseconds = 0
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.pbtxt").write_text(text_format.MessageToString(config))
    if spec.labels:
        (model_dir / "labels.txt").write_text("\n".join(spec.labels) + "\n")


def parity(model: nn.Module, path: Path, images: np.ndarray) -> float:
    """Max abs difference between PyTorch and ONNX Runtime outputs on the same uint8 images."""
    model.eval()
    with torch.no_grad():
        expected = model(torch.from_numpy(images)).numpy()
    session = cpu_session(path)
    got = session.run(None, {session.get_inputs()[0].name: images})[0]
    return float(np.abs(got - expected).max())
