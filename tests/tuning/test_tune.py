"""`deepserve tune` end to end: a real server started on the repository, candidates loaded as
config overrides and measured with the closed-loop load, the winner's folder served again,
the report written, --apply and --resume, and bad options answered clearly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from deepserve import Client
from deepserve.cli import main
from deepserve.training.mnist_data import TEST_IMAGES, TEST_LABELS, write_idx

from ..mnist_sample import digits
from ..server_process import run_server

MODELS = Path(__file__).resolve().parents[2] / "models"
FAST = ["--seconds", "0.3", "--concurrency", "1,4", "--p99-ms", "500"]


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    shutil.copytree(MODELS / "mnist", tmp_path / "models" / "mnist")
    return tmp_path / "models"


def _classifies(folder: Path, logs: Path, model: str = "mnist") -> float:
    images, labels = digits()
    with run_server(folder, logs) as server, Client(server.url, retries=0) as client:
        found = [r.label for r in client.classify(list(images[:100, ..., None]), model=model)]
    return float(np.mean([f == str(t) for f, t in zip(found, labels[:100], strict=True)]))


def test_quick_tune_writes_a_report_and_a_winner_that_serves(
    repository: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "tuned"
    common = ["tune", "--model", "mnist", "--model-repository", str(repository), "--out", str(out)]
    knobs = ["--precisions", "fp32", "--knobs", "max_batch_size,queue_delay_us", *FAST]
    assert main([*common, *knobs]) == 0
    said = capsys.readouterr().out
    report = json.loads((out / "tune-mnist.json").read_text())
    assert len(report["points"]) == 1 + 5 + 3  # the default, then each other value of a knob
    assert all("rows" in p and p["answers_ok"] for p in report["points"])
    assert set(report["confirm"]["ratio_by_concurrency"]) == {"1", "4"}
    winner = report["winner"]["label"]
    assert f"**Winner**: {winner}" in (out / "tune-mnist.md").read_text()
    assert (out / "tune-mnist.png").stat().st_size > 10_000
    assert f"winner: {winner}" in said and "[9]" in said
    config = text_format.Parse((out / "mnist" / "config.pbtxt").read_text(), mc.ModelConfig())
    best = dict(item.split("=") for item in report["winner"]["point"].split(","))
    assert config.name == "mnist" and config.max_batch_size == int(best["max_batch_size"])
    assert (out / "mnist" / "1" / "model.onnx").is_file()
    assert (out / "mnist" / "labels.txt").is_file()
    shutil.rmtree(out / "mnist" / "1")  # the folder alone must serve: no link to the source
    shutil.copytree(repository / "mnist" / "1", out / "mnist" / "1")
    assert _classifies(out, tmp_path) > 0.95
    # A second run resumes: every point read back, none measured again.
    assert main([*common, *knobs, "--resume"]) == 0
    again = capsys.readouterr().out
    assert again.count("(resumed)") == 9 + 1  # the default is looked at twice


def test_int8_is_made_tried_and_applied_as_a_new_version(
    repository: Path, tmp_path: Path, capsys
) -> None:
    data = tmp_path / "mnist-data"
    data.mkdir()
    images, labels = digits()
    write_idx(data / f"{TEST_IMAGES}.gz", images)
    write_idx(data / f"{TEST_LABELS}.gz", labels)
    out = tmp_path / "tuned"
    status = main(
        ["tune", "--model", "mnist", "--model-repository", str(repository), "--out", str(out),
         "--knobs", "precision", "--data", str(data), "--apply", *FAST]
    )  # fmt: skip
    assert status == 0
    report = json.loads((out / "tune-mnist.json").read_text())
    assert report["precisions"] == ["fp32", "int8"]
    int8 = next(p for p in report["points"] if "precision=int8" in p["point"])
    assert int8["agreement"] >= 0.9 and int8["answers_ok"]
    assert (repository / "mnist" / "config.pbtxt.before-tune").is_file()
    applied = text_format.Parse(
        (repository / "mnist" / "config.pbtxt").read_text(), mc.ModelConfig()
    )
    assert applied.name == "mnist"
    if "precision=int8" in report["winner"]["point"]:
        assert (repository / "mnist" / "2" / "model.onnx").is_file()
        assert applied.parameters["precision"].string_value == "INT8"
    assert "applied: wrote mnist/config.pbtxt" in capsys.readouterr().out
    assert _classifies(repository, tmp_path) > 0.95


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--model", "nope"], "no model 'nope' in"),
        (["--model", "mnist", "--p99-ms", "0"], "--p99-ms must be above 0"),
        (["--model", "mnist", "--precisions", "fp16"], "needs a GPU"),
        (["--model", "mnist", "--precisions", "int4"], "unknown precision 'int4'"),
        (["--model", "mnist", "--knobs", "speed"], "unknown knob 'speed'"),
        (["--model", "mnist", "--concurrency", "a,b"], "--concurrency takes whole numbers"),
        (["--model", "mnist", "--url", "127.0.0.1:1", "--apply"], "--apply writes into a"),
    ],
)
def test_bad_options_are_clear_errors(
    repository: Path, tmp_path: Path, capsys, options: list[str], message: str
) -> None:
    out = tmp_path / "tuned"
    status = main(["tune", "--model-repository", str(repository), "--out", str(out), *options])
    assert status == 2
    assert message in capsys.readouterr().err
    assert not (out / "tune-mnist.json").exists()


def test_an_impossible_budget_stops_after_the_first_measurement(
    repository: Path, tmp_path: Path, capsys
) -> None:
    options = ["--seconds", "0.3", "--concurrency", "1", "--precisions", "fp32"]
    status = main(
        ["tune", "--model", "mnist", "--model-repository", str(repository),
         "--out", str(tmp_path / "tuned"), "--p99-ms", "0.001", *options]
    )  # fmt: skip
    assert status == 2
    err = capsys.readouterr().err
    assert "--p99-ms 0.001 is impossible here: one request takes" in err


def test_a_server_that_refuses_loads_is_told_how_to_start_it(
    repository: Path, tmp_path: Path, capsys
) -> None:
    with run_server(repository, tmp_path) as server:  # model control mode 'none'
        status = main(
            ["tune", "--model", "mnist", "--url", server.url, "--out", str(tmp_path / "t"), *FAST]
        )
    assert status == 2
    assert "start it with --model-control-mode explicit" in capsys.readouterr().err
