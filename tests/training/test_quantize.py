"""INT8 variants: the written graph really runs its convolutions in 8 bits, keeps the uint8 image
input and the outputs' types, holds its held-out metric, is timed, is served like its source,
and a variant that fails its check is not left in the repository."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from deepserve import Client
from deepserve.training import quantize
from deepserve.training.mnist_data import TEST_IMAGES, TEST_LABELS, write_idx

from ..mnist_sample import digits
from ..server_process import run_server

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed sample as a test set: its first 400 calibrate, its last 100 are held out."""
    folder = tmp_path_factory.mktemp("mnist")
    images, labels = digits()
    write_idx(folder / f"{TEST_IMAGES}.gz", images)
    write_idx(folder / f"{TEST_LABELS}.gz", labels)
    return folder


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory, data: Path) -> Path:
    out = tmp_path_factory.mktemp("int8")
    shutil.copytree(MODELS / "mnist", out / "mnist")
    assert (
        quantize.main(["mnist", "--models", str(out), "--out", str(out), "--data", str(data)]) == 0
    )
    return out


def _types(values) -> dict[str, int]:
    return {v.name: v.type.tensor_type.elem_type for v in values}


def test_variant_runs_convolutions_in_int8_with_the_same_interface(repository: Path) -> None:
    source = onnx.load(str(repository / "mnist" / "1" / "model.onnx"))
    variant = onnx.load(str(repository / "mnist_int8" / "1" / "model.onnx"))
    onnx.checker.check_model(variant)
    assert _types(variant.graph.input) == _types(source.graph.input)
    assert _types(variant.graph.input)["image"] == TensorProto.UINT8
    assert _types(variant.graph.output) == _types(source.graph.output)
    weights = {i.name: i.data_type for i in variant.graph.initializer}
    ops = [n.op_type for n in variant.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    # Each convolution's weight comes from an int8 tensor through a DequantizeLinear.
    made_by = {out: n for n in variant.graph.node for out in n.output}
    for conv in (n for n in variant.graph.node if n.op_type == "Conv"):
        dequantize = made_by[conv.input[1]]
        assert dequantize.op_type == "DequantizeLinear"
        assert weights[dequantize.input[0]] == TensorProto.INT8
    config = (repository / "mnist_int8" / "config.pbtxt").read_text()
    assert 'name: "mnist_int8"' in config and '"INT8"' in config
    assert (repository / "mnist_int8" / "labels.txt").is_file()


def test_report_and_card_hold_the_metric_and_the_speed(repository: Path) -> None:
    report = json.loads((repository / "mnist_int8" / "training_report.json").read_text())
    assert report["source"] == "mnist" and report["fp32"] > 0.9  # a trained model's accuracy
    assert report["drop_points"] <= quantize.MAX_DROP_POINTS
    assert "training MNIST digits" in report["calibrated_on"]
    assert set(report["images_per_s"]) == {"fp32", "int8"}
    assert {"1", "8", "32"} <= set(report["images_per_s"]["int8"])
    assert report["speedup_batch1"] > 0 and report["speedup_best"] > 0
    card = (repository / "mnist_int8" / "README.md").read_text()
    assert f"INT8 {report['int8']:.4f}" in card and "at batch 1" in card


@pytest.fixture(scope="module")
def served(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    logs = tmp_path_factory.mktemp("int8-logs")
    with run_server(repository, logs) as server, Client(server.url, retries=0) as client:
        yield client


def test_served_variant_classifies_like_its_source(served: Client) -> None:
    images, labels = digits()
    images = images[400:, ..., None]  # the held-out part
    full = [r.label for r in served.classify(list(images), model="mnist")]
    int8 = [r.label for r in served.classify(list(images), model="mnist_int8")]
    assert np.mean([a == b for a, b in zip(full, int8, strict=True)]) >= 0.98
    assert np.mean([h == str(t) for h, t in zip(int8, labels[400:], strict=True)]) > 0.95


def test_a_variant_over_the_limit_fails_and_is_removed(tmp_path: Path, data: Path, capsys) -> None:
    shutil.copytree(MODELS / "mnist", tmp_path / "mnist")
    common = ["mnist", "--models", str(tmp_path), "--out", str(tmp_path), "--data", str(data)]
    assert quantize.main([*common, "--max-drop", "-100"]) == 1
    assert not (tmp_path / "mnist_int8").exists()
    assert "mnist_int8: removed" in capsys.readouterr().out
    assert quantize.main([*common, "--max-drop", "-100", "--keep-failed"]) == 1
    assert (tmp_path / "mnist_int8" / "1" / "model.onnx").is_file()


def test_an_unknown_model_is_a_usage_error(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        quantize.main(["no_such_model", "--models", str(MODELS), "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "no model 'no_such_model'" in capsys.readouterr().err
