"""The engine-ceiling driver speaks the front ends' protocol to a real engine process and stops
at any answer that is not its job's: an error, or rows that are not the job's."""

from __future__ import annotations

import contextlib
import multiprocessing
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from deepserve.server.settings import ServerSettings
from deepserve.server.split.supervisor import engine_process_main
from loadtests.bench import make_images
from loadtests.engine_ceiling import EngineDriver, run_point, submit_message
from loadtests.models import bench_repository, read_config

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def _engine() -> Iterator[tuple[EngineDriver, multiprocessing.process.BaseProcess, str]]:
    """An engine process on mnist's no-op variant, ready, and a driver's line to it."""
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        names = bench_repository(ROOT / "models", "mnist", scratch / "models", 8, 1, 0)
        settings = ServerSettings(
            model_repository=scratch / "models",
            models=(names["noop"],),
            log_level="WARNING",
            metrics_port=0,
        )
        address = f"ipc://{scratch}/engine"
        engine = multiprocessing.get_context("spawn").Process(
            target=engine_process_main, args=(settings, address)
        )
        engine.start()
        line = EngineDriver(address, engine)
        try:
            line.wait_ready(names["noop"])
            yield line, engine, names["noop"]
        finally:
            line.close()
            engine.terminate()
            engine.join(30)


@pytest.fixture(scope="module")
def driver() -> Iterator[tuple[EngineDriver, str]]:
    with _engine() as (line, _, model):
        yield line, model


def _job(model: str, rows: int) -> list:
    config = read_config(ROOT / "models" / "mnist")
    name, images, _ = make_images(config, rows)
    return submit_message(model, ["logits"], name, images, rows)


def test_jobs_come_back_whole(driver: tuple[EngineDriver, str]) -> None:
    line, model = driver
    jobs, elapsed = run_point(line, _job(model, 4), rows=4, window=3, seconds=0.3)
    assert jobs >= 3 and elapsed >= 0.3


def test_an_answer_with_other_rows_stops_the_run(driver: tuple[EngineDriver, str]) -> None:
    line, model = driver
    with pytest.raises(RuntimeError, match="output 'logits' has 4 rows, the job 2"):
        run_point(line, _job(model, 4), rows=2, window=1, seconds=0.1)


def test_an_error_answer_stops_the_run(driver: tuple[EngineDriver, str]) -> None:
    line, _ = driver
    with pytest.raises(RuntimeError, match="NOT_FOUND"):
        run_point(line, _job("no_such_model", 1), rows=1, window=1, seconds=0.1)


def test_an_engine_that_dies_stops_the_run_instead_of_hanging() -> None:
    with _engine() as (line, engine, model):
        engine.kill()
        engine.join(10)
        with pytest.raises(RuntimeError, match="engine exited"):
            run_point(line, _job(model, 1), rows=1, window=1, seconds=0.1)
