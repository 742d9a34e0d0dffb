"""A split server's front end sends requests at once while the engine has few of their kind, and
as one job once it is busy, handing each caller its own rows. The engine here is a recording
stand-in that computes y = 2 x and answers when let; the end-to-end tests run real split servers
(`make test`'s second pass)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from deepserve.server.protocol.errors import ErrorKind, ServerBusy
from deepserve.server.split import wire
from deepserve.server.split.remote_scheduler import MAX_WAIT_S, RemoteScheduler


class RecordingEngine:
    """Answers every submit with y = 2 x, remembering each job's header."""

    def __init__(self, refuse: bool = False) -> None:
        self.jobs: list[dict[str, Any]] = []
        self.refuse = refuse
        self.backlog_ns = 0.0  # what it says of its queue
        self.item_ns = 0.0
        self.answering = asyncio.Event()
        self.answering.set()

    async def call(self, header: list[Any], frames: list[Any]):
        (_, _, _, _, items, outputs, priority, _timeout, deadline_s, descriptors, requests,
         _sequence) = header  # fmt: skip
        feeds = wire.arrays(descriptors, frames)
        self.jobs.append(
            {"items": items, "requests": requests, "priority": priority, "deadline": deadline_s}
        )
        await self.answering.wait()
        if self.refuse:  # as the engine client raises what the engine answered
            raise wire.EngineError(ErrorKind.RESOURCE_EXHAUSTED, "model 'm' queue is full")
        descriptors, frames = wire.describe({name: feeds["x"] * 2 for name in outputs})
        return [1, 2, 3, 4, items, descriptors, self.backlog_ns, self.item_ns, 10, 5], frames


class Stats:
    def __init__(self) -> None:
        self.engine_counts = [0, 0]


def _scheduler(
    engine: RecordingEngine, batching: str = "dynamic_batching { }", max_wait_ms: float = 0.0
) -> RemoteScheduler:
    config = text_format.Parse(f"max_batch_size: 8\n{batching}", mc.ModelConfig())
    return RemoteScheduler(engine, "m", 1, True, Stats(), config, max_wait_ms)  # type: ignore[arg-type]


def _x(value: float, items: int = 1) -> dict[str, np.ndarray]:
    return {"x": np.full((items, 2), value, np.float32)}


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_requests_wait_while_the_engine_is_busy_then_travel_as_one_job() -> None:
    engine = RecordingEngine()

    async def scenario():
        scheduler = _scheduler(engine)  # one instance: two jobs of a kind out at once
        engine.answering.clear()
        calls = [asyncio.ensure_future(scheduler.submit(_x(v), 1, ["y"])) for v in (7, 8)]
        await _settle()
        assert [j["requests"] for j in engine.jobs] == [1, 1]  # an idle engine: at once
        sizes = ((1, 1), (2, 3), (3, 2))
        calls += [asyncio.ensure_future(scheduler.submit(_x(v, n), n, ["y"])) for v, n in sizes]
        await _settle()
        assert len(engine.jobs) == 2  # they wait for a job to come back
        engine.answering.set()
        return await asyncio.gather(*calls)

    results = asyncio.run(scenario())
    assert engine.jobs[2] == {"items": 6, "requests": 3, "priority": 0, "deadline": None}
    assert len(engine.jobs) == 3
    for (value, items), result in zip(
        ((7, 1), (8, 1), (1, 1), (2, 3), (3, 2)), results, strict=True
    ):
        np.testing.assert_array_equal(result.outputs["y"], np.full((items, 2), 2 * value))
    assert results[3].batch_items == 6 and results[3].queue_ns == 1


def test_waiting_requests_leave_after_the_longest_wait_even_with_no_job_back() -> None:
    """Under overload the engine's queue must still refuse at once: nothing waits here long."""
    engine = RecordingEngine()

    async def scenario():
        scheduler = _scheduler(engine)
        engine.answering.clear()
        calls = [asyncio.ensure_future(scheduler.submit(_x(v), 1, ["y"])) for v in range(4)]
        await _settle()
        assert len(engine.jobs) == 2
        await asyncio.sleep(MAX_WAIT_S * 5)
        assert [j["requests"] for j in engine.jobs] == [1, 1, 2]  # no answer came back
        engine.answering.set()
        return await asyncio.gather(*calls)

    results = asyncio.run(scenario())
    for value, result in enumerate(results):
        np.testing.assert_array_equal(result.outputs["y"], np.full((1, 2), 2 * value))


def test_waiting_requests_go_when_they_fill_a_batch_and_kinds_wait_apart() -> None:
    engine = RecordingEngine()

    async def scenario():
        scheduler = _scheduler(engine)
        engine.answering.clear()
        calls = [asyncio.ensure_future(scheduler.submit(_x(v), 1, ["y"])) for v in (0, 0)]
        await _settle()
        calls += [asyncio.ensure_future(scheduler.submit(_x(v, 3), 3, ["y"])) for v in range(4)]
        calls.append(asyncio.ensure_future(scheduler.submit(_x(9), 1, ["y"], priority=1)))
        await _settle()
        # 3 + 3 waited; the third would overflow 8, so those two went; priority 1 is its own kind
        assert [(j["items"], j["requests"], j["priority"]) for j in engine.jobs] == [
            (1, 1, 0), (1, 1, 0), (6, 2, 0), (1, 1, 1),
        ]  # fmt: skip
        engine.answering.set()
        return await asyncio.gather(*calls)

    results = asyncio.run(scenario())
    assert [(j["items"], j["requests"]) for j in engine.jobs][4:] == [(6, 2)]
    for value, result in enumerate(results[2:6]):
        np.testing.assert_array_equal(result.outputs["y"], np.full((3, 2), 2 * value))


def test_a_job_takes_its_latest_deadline_and_unbatched_models_go_one_by_one() -> None:
    engine = RecordingEngine()

    async def waves(deadlines: tuple[float | None, ...]) -> None:
        scheduler = _scheduler(engine)
        engine.answering.clear()
        calls = [
            asyncio.ensure_future(scheduler.submit(_x(v), 1, ["y"], deadline_s=d))
            for v, d in enumerate(deadlines)
        ]
        await _settle()
        engine.answering.set()
        await asyncio.gather(*calls)

    async def scenario():
        await waves((1.0, 2.0, 5.0, 3.0))  # the last two wait together
        await waves((1.0, 2.0, None, 4.0))  # one of those two has no deadline
        plain = _scheduler(engine, batching="")  # no dynamic_batching: one job a request
        await asyncio.gather(*(plain.submit(_x(v), 1, ["y"]) for v in (3, 4)))

    asyncio.run(scenario())
    assert [(j["requests"], j["deadline"]) for j in engine.jobs] == [
        (1, 1.0), (1, 2.0), (2, 5.0),
        (1, 1.0), (1, 2.0), (2, None),
        (1, None), (1, None),
    ]  # fmt: skip


def test_a_refused_job_fails_each_of_its_requests() -> None:
    engine = RecordingEngine(refuse=True)

    async def scenario():
        scheduler = _scheduler(engine)
        engine.answering.clear()
        calls = [asyncio.ensure_future(scheduler.submit(_x(v), 1, ["y"])) for v in range(4)]
        await _settle()
        engine.answering.set()
        return await asyncio.gather(*calls, return_exceptions=True)

    failures = asyncio.run(scenario())
    assert [j["requests"] for j in engine.jobs] == [1, 1, 2]
    assert all(isinstance(f, wire.EngineError) for f in failures)
    assert all(f.kind == ErrorKind.RESOURCE_EXHAUSTED for f in failures)
    assert all("queue is full" in f.message for f in failures)
    assert failures[2] is not failures[3]


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


def test_a_request_the_engine_could_not_serve_in_time_is_refused_before_it_is_prepared() -> None:
    """The engine's last answer says how much work waits there; with what waits here, a
    request past its bound is refused on arrival (before its images are decoded), and the
    engine's backlog counts less as the time it takes passes."""
    engine = RecordingEngine()
    engine.item_ns = 1e6  # 1 ms an item

    async def scenario() -> list[str]:
        scheduler = _scheduler(engine, max_wait_ms=500)
        seen = []
        with scheduler.reserve(400):  # nothing known of the engine's queue yet
            seen.append("admitted before any answer")
        engine.backlog_ns = 450e6
        await scheduler.submit(_x(1), 1, ["y"])
        with scheduler.reserve(10):
            seen.append("450 + 10 ms admitted")
            refusal = r"model 'm' cannot serve .* 10 items here, .* \(max_queue_wait_ms\)"
            with pytest.raises(ServerBusy, match=refusal), scheduler.reserve(45):
                pass  # 450 + 10 held here + 45
        deadline = pytest.raises(ServerBusy, match="its deadline of 300 ms")
        with deadline, scheduler.reserve(1, deadline_s=0.3):
            pass
        await asyncio.sleep(0.2)  # the engine's 450 ms are 250 ms or less by now
        with scheduler.reserve(1, deadline_s=0.3):
            seen.append("admitted once the engine's backlog has run")
        return seen

    assert asyncio.run(scenario()) == [
        "admitted before any answer",
        "450 + 10 ms admitted",
        "admitted once the engine's backlog has run",
    ]
