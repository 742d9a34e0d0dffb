"""Every model family end to end in quick mode: train a few steps, export, onnx.checker,
PyTorch vs ONNX Runtime parity, load in the real server, infer through tritonclient."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
import tritonclient.grpc as triton

from deepserve import Client
from deepserve.training.mnist_data import write_idx

from ..mnist_sample import digits
from ..server_process import RunningServer, run_server

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "tests" / "data" / "pretrained" / "resnet20-cifar10-12fca82f.th"
TEXT = ROOT / "tests" / "data" / "python-docs"
FAMILIES = ("mnist", "cifar10_resnet20", "resnet_transfer", "ssd", "segmentation")


@pytest.fixture(scope="module")
def quick_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("quick")
    data = root / "mnist"
    data.mkdir()
    images, labels = digits()
    write_idx(data / "t10k-images-idx3-ubyte.gz", images)
    write_idx(data / "t10k-labels-idx1-ubyte.gz", labels)
    out = root / "models"
    command = [
        sys.executable,
        "-m",
        "deepserve.training",
        "all",
        "--quick",
        "--data",
        str(data),
        "--weights",
        str(WEIGHTS),
        "--text",
        str(TEXT),
        "--out",
        str(out),
        "--threads",
        "1",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def quick_server(
    quick_repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    with run_server(quick_repo, tmp_path_factory.mktemp("quick-logs")) as server:
        yield server


@pytest.mark.parametrize("family", FAMILIES)
def test_export_follows_the_rules(quick_repo: Path, family: str) -> None:
    model_dir = quick_repo / family
    model = onnx.load(str(model_dir / "1" / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert not [t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    (graph_input,) = model.graph.input
    assert graph_input.name == "image"
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert graph_input.type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    first = model.graph.node[0]
    assert first.op_type == "Cast", "normalisation starts by casting the uint8 input"
    config = (model_dir / "config.pbtxt").read_text()
    assert "dynamic_batching" in config and 'key: "task"' in config
    assert (model_dir / "README.md").read_text().startswith("# ")
    report = json.loads((model_dir / "training_report.json").read_text())
    if "parity_max_abs_diff" in report:
        assert report["parity_max_abs_diff"] <= 1e-4
    if family == "segmentation":
        assert report["parity_identical_pixels"] == 1.0


def _infer(server: RunningServer, model: str, image: np.ndarray) -> triton.InferResult:
    client = triton.InferenceServerClient(server.url)
    tensor = triton.InferInput("image", list(image.shape), "UINT8")
    tensor.set_data_from_numpy(image)
    return client.infer(model, [tensor])


def test_every_family_serves(quick_server: RunningServer) -> None:
    client = triton.InferenceServerClient(quick_server.url)
    assert client.is_server_ready()
    rng = np.random.default_rng(0)
    assert _infer(quick_server, "mnist", rng.integers(0, 256, (3, 28, 28, 1), np.uint8)).as_numpy(
        "logits"
    ).shape == (3, 10)
    for name in ("cifar10_resnet20", "resnet_transfer"):
        logits = _infer(quick_server, name, rng.integers(0, 256, (2, 32, 32, 3), np.uint8))
        assert logits.as_numpy("logits").shape == (2, 10)
    found = _infer(quick_server, "ssd", rng.integers(0, 256, (2, 320, 320, 3), np.uint8))
    assert found.as_numpy("boxes").shape == (2, 100, 4)
    assert found.as_numpy("count").shape == (2,)
    mask = _infer(quick_server, "segmentation", rng.integers(0, 256, (1, 200, 120, 3), np.uint8))
    assert mask.as_numpy("mask").shape == (1, 200, 120)
    assert mask.as_numpy("mask").dtype == np.uint8


def test_the_policy_trains_exports_and_acts(quick_repo: Path, quick_server: RunningServer) -> None:
    folder = quick_repo / "cartpole_policy"
    onnx.checker.check_model(onnx.load(str(folder / "1" / "model.onnx")), full_check=True)
    report = json.loads((folder / "training_report.json").read_text())
    assert report["parity_max_abs"] < 1e-4 and report["training_steps"] == 2 * 256 * 8
    assert 1 <= report["mean_return"] <= 500 and report["episodes"] == 3
    with Client(quick_server.url) as client:  # two updates: an action, if not yet a good one
        chosen = client.act([0.0, 0.0, 0.05, 0.0])
    assert chosen.action in (0, 1) and chosen.values.shape == (2,)  # type: ignore[union-attr]


def test_the_gan_trains_exports_and_generates(
    quick_repo: Path, quick_server: RunningServer
) -> None:
    folder = quick_repo / "mnist_cgan"
    onnx.checker.check_model(onnx.load(str(folder / "1" / "model.onnx")), full_check=True)
    report = json.loads((folder / "training_report.json").read_text())
    assert report["same_seed_same_image"] and report["parity_max_pixel_difference"] <= 1
    assert report["generated"] == 100 and len(report["class_agreement_by_class"]) == 10
    assert report["fid_style"] > 0 and report["fid_style_floor"] > 0
    with Client(quick_server.url) as client:  # one epoch: digits, if not yet good ones
        assert client.generate(digit=4, n=3, seed=9).shape == (3, 28, 28)


def test_the_read_number_pipeline_is_written_measured_and_served(
    quick_repo: Path, quick_server: RunningServer
) -> None:
    for name in ("digit_crops", "number_order"):
        onnx.checker.check_model(onnx.load(str(quick_repo / name / "1" / "model.onnx")), True)
    report = json.loads((quick_repo / "read_number" / "training_report.json").read_text())
    assert report["scenes"] == 8 and 0 <= report["exact_match"] <= 1
    assert "exact-match reading accuracy" in (quick_repo / "read_number" / "README.md").read_text()
    mnist = json.loads((quick_repo / "mnist" / "training_report.json").read_text())
    assert mnist["scene_crops_scenes"] == 16 and 0 <= mnist["number_crop_accuracy"] <= 1
    with Client(quick_server.url) as client:  # quick models: a reading, if not yet a right one
        reading = client.read(np.zeros((320, 320, 3), np.uint8))
    assert isinstance(reading.text, str) and len(reading.characters) == len(reading.text)


def test_word_vectors_train_export_and_serve(quick_repo: Path, quick_server: RunningServer) -> None:
    for name in ("word_embed", "word_similar"):
        onnx.checker.check_model(onnx.load(str(quick_repo / name / "1" / "model.onnx")), True)
    report = json.loads((quick_repo / "word_embed" / "training_report.json").read_text())
    assert report["parity_max_difference"] < 1e-5 and report["held_out_files"] == 1
    assert report["words"] > 1000 and 0 <= report["held_out_context_auc"] <= 1
    with Client(quick_server.url) as client:  # one epoch: neighbours, if not yet good ones
        found = client.similar("python", k=5)
        vector = client.embed("python")
    assert len(found) == 5 and "python" not in [n.word for n in found]
    assert vector.shape == (64,) and abs(float(np.linalg.norm(vector)) - 1) < 1e-5


def test_the_translator_exports_two_graphs_that_decode_as_pytorch_and_serve(
    quick_repo: Path, quick_server: RunningServer
) -> None:
    folder = quick_repo / "date_translator"
    for graph in ("encoder.onnx", "decoder_step.onnx"):
        onnx.checker.check_model(onnx.load(str(folder / "1" / graph)), full_check=True)
    report = json.loads((folder / "training_report.json").read_text())
    assert report["onnx_same_tokens"] == 1.0
    assert (folder / "README.md").read_text().startswith("# date_translator")
    with Client(quick_server.url) as client:  # one epoch: an answer, if not yet a right one
        answer = client.translate("3rd of May 1979")
    assert len(answer.text) <= 11 and set(answer.text) <= set("0123456789-")
    assert answer.attention.shape == (len(answer.text), 40)


def test_transfer_from_a_torchvision_resnet18_file(tmp_path: Path) -> None:
    """`--arch resnet18 --weights FILE`: a torchvision state dict (what `--weights imagenet`
    fetches where there is internet) loads, fine-tunes, exports and keeps parity."""
    import torch
    import torchvision

    data = tmp_path / "mnist"
    data.mkdir()
    images, labels = digits()
    write_idx(data / "t10k-images-idx3-ubyte.gz", images)
    write_idx(data / "t10k-labels-idx1-ubyte.gz", labels)
    torch.manual_seed(0)
    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    command = [
        sys.executable,
        "-m",
        "deepserve.training.resnet_transfer",
        "--quick",
        "--arch",
        "resnet18",
        "--data",
        str(data),
        "--weights",
        str(weights),
        "--out",
        str(tmp_path / "models"),
        "--threads",
        "1",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    report = json.loads((tmp_path / "models/resnet_transfer/training_report.json").read_text())
    assert (report["arch"], report["weights"]) == ("resnet18", "resnet18.pth")
    assert report["parity_max_abs_diff"] <= 1e-4
    onnx.checker.check_model(str(tmp_path / "models/resnet_transfer/1/model.onnx"), full_check=True)

    # A file for another network is refused by name, not silently half-loaded.
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, wrong)
    command[command.index(str(weights))] = str(wrong)
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert "state_dict" in result.stderr and "fc.weight" in result.stderr


def test_resnet50_benchmark_model_is_made_by_one_command_and_served(tmp_path: Path) -> None:
    """torchvision's ResNet-50 at 224x224 (random weights here), exported and served."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    from deepserve import Client
    from deepserve.training.__main__ import main as train

    repo = tmp_path / "models"
    assert train(["resnet50", "--out", str(repo)]) == 0
    config = text_format.Parse((repo / "resnet50" / "config.pbtxt").read_text(), mc.ModelConfig())
    assert config.max_batch_size == 128
    assert list(config.dynamic_batching.preferred_batch_size) == [32, 64, 128]
    accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP16"
    image = np.random.default_rng(0).integers(0, 256, (300, 400, 3), np.uint8)
    with run_server(repo, tmp_path) as server, Client(server.url) as client:
        result = client.classify(image, model="resnet50", top_k=5)
        assert len(result.labels) == 5 and result.label.startswith("class ")
        logits = client.infer("resnet50", {"image": np.zeros((2, 224, 224, 3), np.uint8)})
        assert logits["logits"].shape == (2, 1000)


def test_the_lstm_reader_is_exported_as_a_sequence_model_and_served(
    quick_repo: Path, quick_server: RunningServer
) -> None:
    model_dir = quick_repo / "lstm_reader"
    onnx.checker.check_model(onnx.load(str(model_dir / "1" / "model.onnx")), full_check=True)
    config = (model_dir / "config.pbtxt").read_text()
    assert "sequence_batching" in config and 'input_name: "h_in"' in config
    report = json.loads((model_dir / "training_report.json").read_text())
    assert max(report["streamed_vs_whole_max_abs_diff"].values()) <= 1e-5
    client = triton.InferenceServerClient(quick_server.url)
    image = digits()[0][0]
    for first in range(0, 28, 7):
        rows = triton.InferInput("rows", [1, 7, 28], "UINT8")
        rows.set_data_from_numpy(image[None, first : first + 7])
        start, end = first == 0, first == 21
        result = client.infer(
            "lstm_reader", [rows], sequence_id=7, sequence_start=start, sequence_end=end
        )
        assert result.as_numpy("logits").shape == (1, 10)
    client.close()
