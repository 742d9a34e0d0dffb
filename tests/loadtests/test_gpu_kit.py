"""The GPU kit's steps, dry-run on the CPU (DEVICE=cpu, short points): each runs the code the
device run will, so the one device window is not lost to a broken step."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from loadtests.answers_check import checked_models

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / "loadtests" / "gpu" / "remote.sh"


def _step(tmp_path: Path, *args: str, extra: dict[str, str] | None = None) -> str:
    environment = {
        **os.environ,
        "DEVICE": "cpu",
        "PYTHON": sys.executable,
        "STAGE": str(tmp_path / "stage"),
        "DURATION": "0.3",
        "WARMUP": "0.1",
        "CONCURRENCY": "1,2",
        "SECONDS_PER_POINT": "0.05",
        "BATCHES": "1,8",
        **(extra or {}),
    }
    result = subprocess.run(
        ["bash", str(KIT), *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_bench_step_measures_one_and_eight_images_per_request(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _step(tmp_path, "bench", str(out), "mnist")
    one = json.loads((out / "bench-mnist-cpu.json").read_text())
    eight = json.loads((out / "bench-mnist-cpu-8-per-request.json").read_text())
    assert one["images_per_request"] == 1 and eight["images_per_request"] == 8
    for report in (one, eight):
        assert {(r["mode"], r["concurrency"]) for r in report["rows"]} == {
            (m, c) for m in ("batching", "noop") for c in (1, 2)
        }
        assert all(r["errors"] == 0 for r in report["rows"])
        assert report["ceiling"]["providers"] == ["CPUExecutionProvider"]
        assert report["startup"]["server_ready_s"] > 0
        assert report["startup"]["ceiling_session_ready_s"] > 0
    # 8 images a request: each execution carries at least the request's 8 images
    assert all(r["avg_batch"] >= 8 for r in eight["rows"])
    assert all(
        abs(r["infer_per_s"] - 8 * r["requests_per_s"]) < 1e-6 * r["infer_per_s"]
        for r in eight["rows"]
    )
    assert (out / "environment.txt").is_file()


def test_hostpath_and_answers_steps(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _step(tmp_path, "hostpath", str(out), "mnist")
    hostpath = json.loads((out / "host-device-mnist-cpu.json").read_text())
    assert set(hostpath["images_per_s"]) == {"plain", "iobinding", "iobinding+pinned"}
    assert all(set(v) == {"1", "8"} for v in hostpath["images_per_s"].values())
    printed = _step(tmp_path, "answers", str(out), "mnist", "cifar10_resnet20")
    answers = json.loads((out / "answers-cpu.json").read_text())
    assert set(answers["models"]) == {"mnist", "cifar10_resnet20"}
    assert all(m["passed"] and m["share"] == 1.0 for m in answers["models"].values())
    assert "mnist" in printed and "same top-1" in printed
    written = [p for p in out.rglob("*") if p.is_file()]
    assert len(written) <= 7, written  # one command sends them back with the tests' log


def test_split_step(tmp_path: Path) -> None:
    out = tmp_path / "out"
    environment = {"FRONTENDS": "0,1", "LOAD_PROCESSES": "2", "MODEL_FRONTENDS": "1"}
    _step(tmp_path, "split", str(out), "mnist", extra=environment)
    split = json.loads((out / "split-mnist-cpu.json").read_text())
    assert {(r["mode"], r["frontends"]) for r in split["rows"]} == {("noop", 0), ("noop", 1)}
    assert all(r["errors"] == 0 and r["cpu_s_per_1000"] > 0 for r in split["rows"])
    model = json.loads((out / "frontends-1" / "bench-mnist-cpu.json").read_text())
    assert model["server"]["frontends"] == 1 and model["load_processes"] == 2
    assert all(r["errors"] == 0 for r in model["rows"])
    engine = json.loads((out / "engine-ceiling-mnist-cpu.json").read_text())
    assert {(r["requests_per_job"], r["window"]) for r in engine["rows"]} == {
        (size, window) for size in (1, 8, 32) for window in (1, 16)
    }
    assert all(r["requests_per_s"] > 0 and r["engine_cpu_us_per_job"] > 0 for r in engine["rows"])
    brought_back = [p for p in out.rglob("*") if p.is_file()]
    assert len(brought_back) <= 8, brought_back  # what one device call can send back


def test_generate_step_measures_both_batching_modes_both_ways(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _step(tmp_path, "generate", str(out), extra={"GEN_FRONTENDS": "1", "LOAD_PROCESSES": "2"})
    for answers in ("streamed", "whole"):
        report = json.loads((out / f"generate-bench-{answers}-frontends1.json").read_text())
        assert (report["frontends"], report["load_processes"]) == (1, 2)
        rows = report["rows"]
        assert {(r["mode"], r["concurrency"]) for r in rows} == {
            (mode, c) for mode in ("continuous", "request") for c in (1, 2)
        }
        assert all(r["tokens_per_s"] > 0 and r["answers"] == answers for r in rows)
        assert all(0 < r["engine_cpu_us_per_token"] < r["server_cpu_us_per_token"] for r in rows)
    assert len([p for p in out.rglob("*") if p.is_file()]) <= 8


def test_pipeline_step_measures_the_three_ways(tmp_path: Path) -> None:
    out = tmp_path / "out"
    printed = _step(tmp_path, "pipeline", str(out))
    report = json.loads((out / "pipeline-read_number-cpu.json").read_text())
    assert {(r["way"], r["concurrency"]) for r in report["rows"]} == {
        (way, c) for way in ("pipeline", "slowest stage", "hand chain") for c in (1, 2)
    }
    assert all(r["throughput_per_s"] > 0 and r["errors"] == 0 for r in report["rows"])
    assert "pipeline / slowest stage" in printed
    assert len([p for p in out.rglob("*") if p.is_file()]) <= 8


def test_tests_step_selects_the_cuda_tests(tmp_path: Path) -> None:
    printed = _step(tmp_path, "tests", str(tmp_path / "out"))
    assert re.search(r"\b[1-9]\d* skipped", printed) and "needs onnxruntime-gpu" in printed
    assert " passed" not in printed and " failed" not in printed  # a CPU runs none of them


def test_the_answers_check_leaves_out_the_random_weight_benchmark_models(tmp_path: Path) -> None:
    image_model = (ROOT / "models" / "mnist" / "config.pbtxt").read_text()
    for name in ("resnet50", "resnet50_fp16", "mnist_fp16"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.pbtxt").write_text(image_model.replace("mnist", name))
    checked = checked_models([ROOT / "models", tmp_path])
    assert "mnist_fp16" in checked and "mnist" in checked
    assert not {"resnet50", "resnet50_fp16"} & set(checked)
    # Text and sequence models have checks of their own.
    assert not {"date_translator", "lstm_reader"} & set(checked)
