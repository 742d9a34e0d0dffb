"""A split server's front end groups the requests that arrive in one turn of its loop into one
engine job, and hands each caller its own rows. The engine here is a recording stand-in that
computes y = 2 x; the end-to-end tests run real split servers (`make test`'s second pass)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from deepserve.server.errors import ErrorKind
from deepserve.server.split import wire
from deepserve.server.split.remote_scheduler import RemoteScheduler


class RecordingEngine:
    """Answers every submit with y = 2 x, remembering each job's header."""

    def __init__(self, refuse: bool = False) -> None:
        self.jobs: list[dict[str, Any]] = []
        self.refuse = refuse

    async def call(self, header: list[Any], frames: list[Any]):
        (_, _, _, _, items, outputs, priority, _timeout, deadline_s, descriptors, requests) = header
        feeds = wire.arrays(descriptors, frames)
        self.jobs.append(
            {"items": items, "requests": requests, "priority": priority, "deadline": deadline_s}
        )
        await asyncio.sleep(0)
        if self.refuse:  # as the engine client raises what the engine answered
            raise wire.EngineError(ErrorKind.RESOURCE_EXHAUSTED, "model 'm' queue is full")
        descriptors, frames = wire.describe({name: feeds["x"] * 2 for name in outputs})
        return [1, 2, 3, 4, items, descriptors, 10, 5], frames


class Stats:
    def __init__(self) -> None:
        self.engine_counts = [0, 0]


def _scheduler(engine: RecordingEngine, batching: str = "dynamic_batching { }") -> RemoteScheduler:
    config = text_format.Parse(f"max_batch_size: 8\n{batching}", mc.ModelConfig())
    return RemoteScheduler(engine, "m", 1, True, Stats(), config)  # type: ignore[arg-type]


def _x(value: float, items: int = 1) -> dict[str, np.ndarray]:
    return {"x": np.full((items, 2), value, np.float32)}


def test_requests_of_one_turn_travel_as_one_job_and_get_their_own_rows() -> None:
    engine = RecordingEngine()

    async def scenario():
        scheduler = _scheduler(engine)
        return await asyncio.gather(
            *(scheduler.submit(_x(v, n), n, ["y"]) for v, n in ((1, 1), (2, 3), (3, 2)))
        )

    results = asyncio.run(scenario())
    assert engine.jobs == [{"items": 6, "requests": 3, "priority": 0, "deadline": None}]
    for (value, items), result in zip(((1, 1), (2, 3), (3, 2)), results, strict=True):
        np.testing.assert_array_equal(result.outputs["y"], np.full((items, 2), 2 * value))
        assert result.batch_items == 6 and result.queue_ns == 1


def test_groups_stay_within_max_batch_size_and_apart_by_priority() -> None:
    engine = RecordingEngine()

    async def scenario():
        scheduler = _scheduler(engine)
        calls = [scheduler.submit(_x(v, 3), 3, ["y"]) for v in range(4)]  # 12 items > 8
        calls.append(scheduler.submit(_x(9), 1, ["y"], priority=1))
        return await asyncio.gather(*calls)

    results = asyncio.run(scenario())
    assert sorted((j["items"], j["requests"], j["priority"]) for j in engine.jobs) == [
        (1, 1, 1),
        (6, 2, 0),
        (6, 2, 0),
    ]
    for value, result in enumerate(results[:4]):
        np.testing.assert_array_equal(result.outputs["y"], np.full((3, 2), 2 * value))


def test_deadlines_and_unbatched_models_travel_alone() -> None:
    engine = RecordingEngine()

    async def scenario():
        scheduler = _scheduler(engine)
        await asyncio.gather(*(scheduler.submit(_x(v), 1, ["y"], deadline_s=5.0) for v in (1, 2)))
        plain = _scheduler(engine, batching="")  # no dynamic_batching: one job a request
        await asyncio.gather(*(plain.submit(_x(v), 1, ["y"]) for v in (3, 4)))

    asyncio.run(scenario())
    assert [(j["requests"], j["deadline"]) for j in engine.jobs] == [
        (1, 5.0),
        (1, 5.0),
        (1, None),
        (1, None),
    ]


def test_a_refused_job_fails_each_of_its_requests() -> None:
    engine = RecordingEngine(refuse=True)

    async def scenario():
        scheduler = _scheduler(engine)
        return await asyncio.gather(
            *(scheduler.submit(_x(v), 1, ["y"]) for v in (1, 2)), return_exceptions=True
        )

    failures = asyncio.run(scenario())
    assert len(engine.jobs) == 1 and engine.jobs[0]["requests"] == 2
    assert all(isinstance(f, wire.EngineError) for f in failures)
    assert all(
        f.kind == ErrorKind.RESOURCE_EXHAUSTED and "queue is full" in f.message for f in failures
    )
    assert failures[0] is not failures[1]


def test_a_caller_that_gives_up_does_not_disturb_the_others() -> None:
    engine = RecordingEngine()

    async def scenario():
        scheduler = _scheduler(engine)
        leaving = asyncio.ensure_future(scheduler.submit(_x(1), 1, ["y"]))
        staying = asyncio.ensure_future(scheduler.submit(_x(2), 1, ["y"]))
        await asyncio.sleep(0)
        leaving.cancel()
        return await staying, leaving

    result, leaving = asyncio.run(scenario())
    np.testing.assert_array_equal(result.outputs["y"], np.full((1, 2), 4.0))
    assert leaving.cancelled()
    with pytest.raises(asyncio.CancelledError):
        leaving.result()
