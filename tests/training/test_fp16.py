"""FP16 variants: the exported graph really computes in half precision, keeps the uint8 image
input and the outputs' types, holds its held-out metric, and is served like its source."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from deepserve import Client
from deepserve.training import fp16
from deepserve.training.mnist_data import TEST_IMAGES, TEST_LABELS, write_idx
from deepserve.training.scenes import make_scene

from ..mnist_sample import digits
from ..reference import pair_iou
from ..server_process import run_server

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
CONVERTED = ["mnist", "ssd", "segmentation"]


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled models named, and their FP16 variants made by the command line."""
    out = tmp_path_factory.mktemp("fp16")
    for name in CONVERTED:
        shutil.copytree(MODELS / name, out / name)
    data = tmp_path_factory.mktemp("mnist")  # the sample as a test set; its last 100 held out
    images, labels = digits()
    write_idx(data / f"{TEST_IMAGES}.gz", images)
    write_idx(data / f"{TEST_LABELS}.gz", labels)
    status = fp16.main([*CONVERTED, "--models", str(out), "--out", str(out), "--data", str(data)])
    assert status == 0
    return out


def _types(values) -> dict[str, int]:
    return {v.name: v.type.tensor_type.elem_type for v in values}


@pytest.mark.parametrize("name", CONVERTED)
def test_variant_is_half_precision_with_the_same_interface(repository: Path, name: str) -> None:
    source = onnx.load(str(repository / name / "1" / "model.onnx"))
    variant = onnx.load(str(repository / f"{name}_fp16" / "1" / "model.onnx"))
    onnx.checker.check_model(variant, full_check=True)
    assert _types(variant.graph.input) == _types(source.graph.input)
    assert _types(variant.graph.input)["image"] == TensorProto.UINT8
    assert _types(variant.graph.output) == _types(source.graph.output)
    weights = {i.name: i.data_type for i in variant.graph.initializer}
    convolutions = [n.input[1] for n in variant.graph.node if n.op_type == "Conv"]
    assert convolutions and all(weights[w] == TensorProto.FLOAT16 for w in convolutions)
    size = (repository / f"{name}_fp16" / "1" / "model.onnx").stat().st_size
    assert size < 0.6 * (repository / name / "1" / "model.onnx").stat().st_size


@pytest.mark.parametrize("name", CONVERTED)
def test_variant_report_holds_the_held_out_metric(repository: Path, name: str) -> None:
    report = json.loads((repository / f"{name}_fp16" / "training_report.json").read_text())
    assert report["source"] == name and report["held_out"]
    assert report["fp32"] > 0.5  # a real metric of a trained model, not a placeholder
    assert report["drop_points"] <= fp16.MAX_DROP_POINTS
    card = (repository / f"{name}_fp16" / "README.md").read_text()
    assert f"FP32 {report['fp32']:.4f}" in card and f"FP16 {report['fp16']:.4f}" in card


@pytest.fixture(scope="module")
def served(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    logs = tmp_path_factory.mktemp("fp16-logs")
    with run_server(repository, logs) as server, Client(server.url, retries=0) as client:
        yield client


def test_served_variant_classifies_like_its_source(served: Client) -> None:
    images, labels = digits()
    images = images[:200, ..., None]
    full = [r.label for r in served.classify(list(images), model="mnist")]
    half = [r.label for r in served.classify(list(images), model="mnist_fp16")]
    agreement = np.mean([a == b for a, b in zip(full, half, strict=True)])
    assert agreement >= 0.995, agreement
    assert np.mean([h == str(t) for h, t in zip(half, labels[:200], strict=True)]) > 0.95


def test_served_variant_detects_and_segments_like_its_source(served: Client) -> None:
    images, labels = digits()
    scenes = [make_scene(images, labels, seed).image for seed in range(12)]
    matched = 0
    for full, half in zip(
        served.detect(scenes, model="ssd"), served.detect(scenes, model="ssd_fp16"), strict=True
    ):
        full, half = (sorted(found, key=lambda d: (d.label, d.box.x1)) for found in (full, half))
        same = len(full) == len(half) and all(
            a.label == b.label
            and pair_iou(
                [a.box.x1, a.box.y1, a.box.x2, a.box.y2], [b.box.x1, b.box.y1, b.box.x2, b.box.y2]
            )
            > 0.95
            for a, b in zip(full, half, strict=True)
        )
        matched += same
    assert matched >= 11, f"{matched} of 12 scenes with the same detections"
    for full, half in zip(
        served.segment(scenes[:4], model="segmentation"),
        served.segment(scenes[:4], model="segmentation_fp16"),
        strict=True,
    ):
        assert np.mean(full.mask == half.mask) > 0.995


def test_training_command_writes_the_variant_with_fp16(tmp_path: Path) -> None:
    """`--fp16` on a family's command: the published ResNet-20 exported, then its variant."""
    weights = ROOT / "tests" / "data" / "pretrained" / "resnet20-cifar10-12fca82f.th"
    data = tmp_path / "mnist"
    data.mkdir()
    images, labels = digits()
    write_idx(data / f"{TEST_IMAGES}.gz", images)
    write_idx(data / f"{TEST_LABELS}.gz", labels)
    command = [sys.executable, "-m", "deepserve.training", "cifar10_resnet20", "--fp16"]
    arguments = ["--weights", str(weights), "--data", str(data), "--out", str(tmp_path / "m")]
    result = subprocess.run([*command, *arguments], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(
        (tmp_path / "m" / "cifar10_resnet20_fp16" / "training_report.json").read_text()
    )
    assert report["metric"] == "top-1 agreement with FP32" and report["fp16"] >= 0.99
    config = (tmp_path / "m" / "cifar10_resnet20_fp16" / "config.pbtxt").read_text()
    assert 'name: "cifar10_resnet20_fp16"' in config and "FP16" in config
    assert (tmp_path / "m" / "cifar10_resnet20_fp16" / "labels.txt").is_file()


def test_families_export_without_the_fp16_converter() -> None:
    """A GPU host may lack onnxconverter-common: the exporters import it only for --fp16."""
    code = (
        "import sys; sys.modules['onnxconverter_common'] = None\n"
        "import deepserve.training.resnet50, deepserve.training.mnist, deepserve.training.ssd\n"
        "from deepserve.training import fp16\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_no_check_writes_a_variant_without_held_out_data(tmp_path: Path, capsys) -> None:
    """A random-weight benchmark model has nothing to measure: the variant is written, in FP16,
    and no data is read (the folder named does not exist)."""
    absent = str(tmp_path / "no-such-folder")
    status = fp16.main(
        ["mnist", "--models", str(MODELS), "--out", str(tmp_path), "--no-check", "--data", absent]
    )
    assert status == 0 and "mnist_fp16: written, not measured" in capsys.readouterr().out
    graph = onnx.load(str(tmp_path / "mnist_fp16" / "1" / "model.onnx")).graph
    assert {init.data_type for init in graph.initializer} == {TensorProto.FLOAT16}
    assert not (tmp_path / "mnist_fp16" / "training_report.json").exists()  # nothing measured


def test_the_fp16_tool_does_not_need_torch() -> None:
    """A serving host has ONNX and ONNX Runtime, not always torch (the GPU kit converts there)."""
    probe = (
        "import sys; import deepserve.training.fp16, deepserve.training.precision_check; "
        "print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "False"
