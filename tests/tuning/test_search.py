"""The tuner's core in process: the knobs of a config, the config of a point, the objective,
the quick and full searches over a made-up cost model, and resuming from the progress file."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2 as mc

from deepserve.tuning.search import Progress, Search, better, feasible, score
from deepserve.tuning.space import Point, default_point, dimensions, grid, point_config

MNIST = Path(__file__).resolve().parents[2] / "models" / "mnist" / "config.pbtxt"


def _config() -> mc.ModelConfig:
    return text_format.Parse(MNIST.read_text(), mc.ModelConfig())


def test_default_point_reads_the_config() -> None:
    config = _config()
    config.parameters["intra_op_thread_count"].string_value = "2"
    config.dynamic_batching.preferred_batch_size.extend([32, 64])
    config.dynamic_batching.max_queue_delay_microseconds = 100
    config.optimization.graph.level = 1
    config.instance_group.add(count=3)
    point = default_point(config)
    assert point == Point("fp32", 64, 3, 2, 100, 2, 1)
    assert Point.from_key(point.key()) == point


def test_point_config_sets_each_knob_under_tritons_names() -> None:
    point = Point("fp32", max_batch_size=16, instances=2, threads=1, queue_delay_us=500,
                  preferred=2, graph_level=-1)  # fmt: skip
    config = point_config(_config(), point, gpu=False)
    assert config.max_batch_size == 16
    assert [(g.count, g.kind) for g in config.instance_group] == [
        (2, mc.ModelInstanceGroup.KIND_CPU)
    ]
    assert config.parameters["intra_op_thread_count"].string_value == "1"
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert list(config.dynamic_batching.preferred_batch_size) == [8, 16]
    assert config.optimization.graph.level == -1
    assert config.parameters["task"].string_value == "classification"  # the rest kept
    # The override a load call carries is the same config in JSON.
    gpu = point_config(_config(), dataclasses.replace(point, precision="tensorrt_fp16"), gpu=True)
    accelerator = gpu.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP16"
    assert json_format.Parse(json_format.MessageToJson(gpu), mc.ModelConfig()) == gpu


def test_dimensions_start_at_the_default_and_fit_the_machine() -> None:
    start = default_point(_config())
    dims = dimensions(start, ("fp32", "int8"), cores=2)
    assert all(values[0] == getattr(start, name) for name, values in dims.items())
    assert dims["instances"] == [1, 2] and dims["threads"] == [0, 1, 2]
    assert next(iter(dims)) == "precision"
    unbatched = dimensions(dataclasses.replace(start, max_batch_size=0), ("fp32",), cores=2)
    assert "max_batch_size" not in unbatched and "queue_delay_us" not in unbatched
    sizes = [len(v) for v in dims.values()]
    points = list(grid(dims, start))
    assert len(points) == math.prod(sizes) and len(set(points)) == len(points)


def _result(point: Point, throughput: float, p99: float, ok: bool = True) -> dict:
    rows = {"1": {"throughput": throughput, "p99_ms": p99, "errors": 0}}
    return {"point": point.key(), "label": point.label(), "rows": rows, "answers_ok": ok,
            "agreement": 1.0 if ok else 0.5}  # fmt: skip


def _cost_model(point: Point) -> dict:
    """Made up: batching to 16 and two instances help, a queue delay costs latency, INT8 is
    faster but answers wrong when threads is 1 (to see the check refuse a point)."""
    throughput = 100.0 * min(point.max_batch_size, 16) ** 0.3 * (1.4 if point.instances == 2 else 1)
    throughput *= 1.5 if point.precision == "int8" else 1.0
    p99 = 5.0 + point.queue_delay_us / 100
    return _result(
        point, throughput, p99, ok=not (point.precision == "int8" and point.threads == 1)
    )


def test_objective_prefers_the_budget_then_throughput_beyond_noise() -> None:
    point = Point()
    fast_late, slow_on_time = _result(point, 500, 20), _result(point, 100, 5)
    budget = {"1": 10.0}
    assert not feasible(fast_late, budget) and feasible(slow_on_time, budget)
    assert better(slow_on_time, fast_late, budget)
    assert not better(_result(point, 101, 5), slow_on_time, budget)  # within the noise
    assert better(_result(point, 110, 5), slow_on_time, budget)
    assert not feasible(_result(point, 900, 1, ok=False), budget)  # wrong answers never win
    assert math.isclose(score({"rows": {"1": {"throughput": 100}, "64": {"throughput": 400}}}), 200)


def test_quick_search_climbs_knob_by_knob(tmp_path: Path) -> None:
    start = default_point(_config())
    dims = dimensions(start, ("fp32", "int8"), cores=2)
    measured: list[Point] = []

    def measure(point: Point) -> dict:
        measured.append(point)
        return _cost_model(point)

    search = Search(measure, Progress(tmp_path / "p.jsonl", False), {"1": 10.0}, say=lambda _: None)
    best, result = search.quick(start, dims)
    assert best.precision == "int8" and best.instances == 2 and best.threads != 1
    assert best.queue_delay_us <= 500  # 5000 us would break the 10 ms budget
    assert feasible(result, {"1": 10.0})
    assert len(measured) == 1 + sum(len(v) - 1 for v in dims.values())
    assert len(measured) < 25  # quick: a few points a knob, not the grid's 1,944


def test_full_search_finds_the_grid_optimum_and_a_run_resumes(tmp_path: Path) -> None:
    start = Point("fp32", 16, 1, 0, 0, 0, 0)
    dims = {"precision": ["fp32", "int8"], "instances": [1, 2], "queue_delay_us": [0, 5000]}
    progress_file = tmp_path / "progress.jsonl"
    calls: list[Point] = []

    def measure(point: Point) -> dict:
        calls.append(point)
        return _cost_model(point)

    best, _ = Search(measure, Progress(progress_file, False), {"1": 10.0}, lambda _: None).full(
        start, dims
    )
    assert (best.precision, best.instances, best.queue_delay_us) == ("int8", 2, 0)
    assert len(calls) == 8
    lines: list[str] = []
    again = Search(measure, Progress(progress_file, resume=True), {"1": 10.0}, lines.append)
    assert again.full(start, dims)[0] == best
    assert len(calls) == 8  # nothing measured twice
    assert all(line.endswith("(resumed)") for line in lines)
    # Without --resume the old progress is dropped.
    assert Progress(progress_file, resume=False).results == {}


def test_a_near_winner_over_budget_once_is_measured_again(tmp_path: Path) -> None:
    """One stalled request puts a short load's p99 over the budget: a point that would win
    is measured once more before it is turned down; a slow point is not."""
    start = Point("fp32", 16, 1, 0, 0, 0, 0)
    dims = {"precision": ["fp32", "int8"], "queue_delay_us": [0, 5000]}
    calls: list[Point] = []
    lines: list[str] = []

    def measure(point: Point) -> dict:
        calls.append(point)
        result = _cost_model(point)
        if point.precision == "int8" and calls.count(point) == 1:  # a stall, the first time
            result["rows"]["1"]["p99_ms"] = 50.0
        return result

    search = Search(measure, Progress(tmp_path / "p.jsonl", False), {"1": 10.0}, lines.append)
    best, result = search.quick(start, dims)
    assert best.precision == "int8" and feasible(result, {"1": 10.0})
    assert sum(1 for line in lines if "measured again" in line) == 1
    # queue_delay 5000 us is over budget too, but it would not win: measured once.
    assert calls.count(dataclasses.replace(best, queue_delay_us=5000)) == 1
