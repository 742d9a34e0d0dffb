"""The benchmark script end to end, short: every mode measured, JSON and plot written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_measures_every_mode_and_writes_json_and_png(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "loadtests.bench",
        "--model",
        "mnist",
        "--model-repository",
        str(ROOT / "models"),
        "--concurrency",
        "1,4",
        "--duration",
        "0.5",
        "--warmup",
        "0.2",
        "--ceiling-seconds",
        "0.1",
        "--max-batch-size",
        "8",
        "--out",
        str(tmp_path),
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "bench-mnist-cpu.json").read_text())
    assert (tmp_path / "bench-mnist-cpu.png").stat().st_size > 10_000
    modes = {(row["mode"], row["concurrency"]) for row in report["rows"]}
    assert modes == {(m, c) for m in ("batching", "no_batching", "noop", "simple") for c in (1, 4)}
    for row in report["rows"]:
        assert row["errors"] == 0 and row["requests"] > 0 and row["infer_per_s"] > 0
        assert row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
    assert report["ceiling"]["items_per_s"] > 0
    assert set(report["summary"]) == {"1", "4"}
    # At concurrency 1 the p50 is split into its parts, the gRPC floor measured beside it.
    parts = report["summary"]["1"]
    assert 0 < report["grpc_floor"]["p50_ms"] == parts["grpc_floor_p50_ms"]
    assert parts["deepserve_ms"] > 0  # deepserve's no-op is more work than the floor's answer
    assert "gRPC floor" in result.stdout
    # The simple server (one session, run in its handler) is measured beside deepserve.
    assert parts["vs_simple"] > 0 and "against the simple server" in result.stdout
    assert "1/(1/C+1/N)" in result.stdout


def test_cache_bench_serves_repeated_inputs_from_the_cache_only_where_enabled(
    tmp_path: Path,
) -> None:
    command = [
        sys.executable, "-m", "loadtests.cache_bench", "--model", "mnist",
        "--model-repository", str(ROOT / "models"), "--distinct", "4", "--concurrency", "1",
        "--duration", "0.5", "--warmup", "0.2", "--out", str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "response-cache-mnist-cpu.json").read_text())
    rows = {row["cache"]: row for row in report["rows"]}
    assert rows["off"]["cache_hits"] == 0 and rows["off"]["executions"] > 4
    assert rows["on"]["executions"] == 4  # each distinct input ran once
    assert rows["on"]["cache_hits"] > 4 and rows["on"]["requests_per_s"] > 0


def test_shm_bench_measures_both_ways_without_errors(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "loadtests.shm_bench", "--model-repository", str(ROOT / "models"),
        "--concurrency", "2", "--duration", "0.5", "--warmup", "0.2", "--out", str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads((tmp_path / "shared-memory-cpu.json").read_text())["rows"]
    measured = {(row["model"], row["tensors"]) for row in rows}
    assert measured == {
        (model, way)
        for model in ("resnet50_sizes", "segmentation")
        for way in ("in the request", "shared memory")
    }
    assert all(row["errors"] == 0 and row["requests_per_s"] > 0 for row in rows)


def test_call_cost_reads_each_servers_cpu_per_call_and_splits_deepserves_handler(
    tmp_path: Path,
) -> None:
    command = [
        *(sys.executable, "-m", "loadtests.call_cost", "--model", "mnist"),
        *("--model-repository", str(ROOT / "models"), "--duration", "0.5", "--out", str(tmp_path)),
        *("--handler-calls", "500"),
    ]
    subprocess.run(command, check=True, cwd=ROOT, timeout=600)
    report = json.loads((tmp_path / "call-cost-mnist-cpu.json").read_text())
    rows = report["rows"]
    assert set(rows) == {
        "deepserve, no-op model",
        "deepserve",
        "simple server, no-op model",
        "simple server",
        "gRPC floor",
    }
    for label, row in rows.items():
        assert row["calls"] > 10 and row["errors"] == 0, label
        assert row["server_cpu_us_per_call"] > 0, label
    measured = report["handler"]["us_per_call"]
    # Nested steps: each does all the one inside it and more.
    assert 0 < measured["onnxruntime_run"] < measured["data_plane"] < measured["handler"]


def test_generate_bench_measures_both_batching_modes(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "loadtests.generate_bench", "--concurrency", "1,4",
        "--duration", "0.5", "--warmup", "0.2", "--out", str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads((tmp_path / "generate-bench-streamed.json").read_text())["rows"]
    assert {(row["mode"], row["concurrency"]) for row in rows} == {
        (mode, c) for mode in ("continuous", "request") for c in (1, 4)
    }
    for row in rows:
        assert row["tokens"] > 0 and row["tokens_per_s"] > 0
        assert 0 < row["first_token_p50_ms"] <= row["last_token_p50_ms"]
        assert row["average_step_batch"] >= 1.0
    assert "continuous / request-level tokens/s" in result.stdout


def test_generate_bench_splits_the_server_and_spreads_its_clients(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "loadtests.generate_bench", "--concurrency", "4",
        "--duration", "0.5", "--warmup", "0.2", "--frontends", "1", "--load-processes", "2",
        "--answers", "whole", "--out", str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "generate-bench-whole-frontends1.json").read_text())
    assert (report["frontends"], report["load_processes"]) == (1, 2)
    for row in report["rows"]:
        # Both client processes' streams were answered, and the engine is a part of the server.
        assert row["requests"] > 4 and row["tokens"] > 0
        assert 0 < row["engine_cpu_us_per_token"] < row["server_cpu_us_per_token"]
    assert "engine CPU a token, request-level / continuous" in result.stdout


def test_act_bench_runs_the_same_episodes_in_process_and_through_the_server(
    tmp_path: Path,
) -> None:
    command = [
        sys.executable, "-m", "loadtests.act_bench", "--episodes", "2", "--out", str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads((tmp_path / "act-bench-cpu.json").read_text())["rows"]
    assert [row["way"] for row in rows] == ["in-process", "server (SDK act, gRPC)"]
    # The bundled policy balances both held-out episodes to the end, served or not.
    assert [row["mean_return"] for row in rows] == [500.0, 500.0]
    assert all(row["calls"] == 1000 and 0 < row["p50_ms"] <= row["p99_ms"] for row in rows)
