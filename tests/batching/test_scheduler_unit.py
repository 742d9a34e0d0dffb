"""The job queue and the dynamic batcher in-process, with a fake session: fast checks of how
batches form, without a server or ONNX Runtime (the end-to-end batching tests run real ones)."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from deepserve.server.batching.instance import PlainInstance
from deepserve.server.batching.pace import STALE_S, Pace
from deepserve.server.batching.queue import JobQueue
from deepserve.server.batching.scheduler import INLINE_MAX_RUN_NS, Scheduler
from deepserve.server.batching.stats import ModelStats
from deepserve.server.protocol.errors import DeadlineExceeded, QueueTimeout, ServerBusy


class FakeSession:
    """y = 2 x, taking `seconds` a run; remembers the batch sizes it ran."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.batches: list[int] = []
        self.threads: list[int] = []
        self.release = threading.Event()
        self.release.set()

    def run(self, names, feeds, run_options=None):
        self.release.wait(5)
        time.sleep(self.seconds)
        self.batches.append(len(feeds["x"]))
        self.threads.append(threading.get_ident())
        return [feeds["x"] * 2 for _ in names]


def _config(text: str) -> mc.ModelConfig:
    return text_format.Parse(f"max_batch_size: 8\n{text}", mc.ModelConfig())


def _scheduler(text: str, session: FakeSession, executor, queue_size: int = 64) -> Scheduler:
    instances = [PlainInstance(session)]  # type: ignore[arg-type]
    return Scheduler("fake", _config(text), instances, executor, ModelStats(), queue_size)


def _feeds(value: float, items: int = 1) -> dict[str, np.ndarray]:
    return {"x": np.full((items, 2), value, np.float32)}


@pytest.fixture()
def executor():
    with ThreadPoolExecutor(4) as pool:
        yield pool


async def _busy(scheduler: Scheduler, session: FakeSession) -> asyncio.Task:
    """Hold the only instance with a first job, so the next ones queue behind it."""
    session.release.clear()
    first = asyncio.create_task(scheduler.submit(_feeds(-1), 1, ["y"]))
    await asyncio.sleep(0.05)
    return first


def test_jobs_merge_whole_up_to_max_batch_and_each_gets_its_slice(executor) -> None:
    session = FakeSession()

    async def scenario():
        scheduler = _scheduler("dynamic_batching { }", session, executor)
        first = await _busy(scheduler, session)
        jobs = [scheduler.submit(_feeds(v, 3), 3, ["y"]) for v in (1, 2, 3)]  # 9 items > 8
        tasks = [asyncio.create_task(j) for j in jobs]
        await asyncio.sleep(0.02)
        session.release.set()
        results = await asyncio.gather(first, *tasks)
        return [r.outputs["y"] for r in results[1:]]

    outputs = asyncio.run(scenario())
    for value, output in zip((1, 2, 3), outputs, strict=True):
        np.testing.assert_array_equal(output, np.full((3, 2), 2 * value))
    assert session.batches == [1, 6, 3]  # whole jobs: 3 + 3 fit in 8, the third waits


def test_preferred_batch_size_is_sent_as_soon_as_formed(executor) -> None:
    session = FakeSession()

    async def scenario():
        scheduler = _scheduler(
            "dynamic_batching { preferred_batch_size: [2] max_queue_delay_microseconds: 500000 }",
            session,
            executor,
        )
        started = time.perf_counter()
        tasks = [asyncio.create_task(scheduler.submit(_feeds(v), 1, ["y"])) for v in range(3)]
        await asyncio.gather(*tasks[:2])
        pair = time.perf_counter() - started
        await tasks[2]
        return pair, time.perf_counter() - started

    pair, single = asyncio.run(scenario())
    assert session.batches == [2, 1]
    assert pair < 0.3  # the preferred size went at once
    assert single >= 0.45  # the one left waited for more, up to max_queue_delay


def test_a_full_queue_refuses_at_once(executor) -> None:
    session = FakeSession()

    async def scenario():
        scheduler = _scheduler(
            "dynamic_batching { default_queue_policy { max_queue_size: 2 } }", session, executor
        )
        first = await _busy(scheduler, session)
        waiting = [asyncio.create_task(scheduler.submit(_feeds(v), 1, ["y"])) for v in (1, 2)]
        await asyncio.sleep(0.01)
        with pytest.raises(ServerBusy, match="max_queue_size 2"):
            await scheduler.submit(_feeds(3), 1, ["y"])
        session.release.set()
        await asyncio.gather(first, *waiting)

    asyncio.run(scenario())


def test_a_job_of_several_requests_counts_them_all_against_the_bound(executor) -> None:
    """A split server's front end merges requests into one job: the queue bound stays in
    requests."""
    session = FakeSession()

    async def scenario():
        scheduler = _scheduler(
            "dynamic_batching { default_queue_policy { max_queue_size: 4 } }", session, executor
        )
        first = await _busy(scheduler, session)
        three = scheduler.enqueue(_feeds(1, 3), 3, ["y"], requests=3)
        with pytest.raises(ServerBusy, match="3 requests waiting"):
            scheduler.enqueue(_feeds(2, 2), 2, ["y"], requests=2)
        one = scheduler.enqueue(_feeds(4), 1, ["y"])
        assert len(scheduler.queue) == 4
        session.release.set()
        await asyncio.gather(first, three, one)
        assert len(scheduler.queue) == 0
        return (await three).outputs["y"]

    np.testing.assert_array_equal(asyncio.run(scenario()), np.full((3, 2), 2.0))


def test_priority_one_is_served_first(executor) -> None:
    session = FakeSession()
    order: list[float] = []

    async def scenario():
        scheduler = _scheduler("dynamic_batching { priority_levels: 2 }", session, executor)
        scheduler.max_batch_size = 1  # one job a batch, to see the order
        first = await _busy(scheduler, session)

        async def job(value: float, priority: int):
            result = await scheduler.submit(_feeds(value), 1, ["y"], priority=priority)
            order.append(float(result.outputs["y"][0, 0]) / 2)

        tasks = [asyncio.create_task(job(v, p)) for v, p in ((1, 2), (2, 2), (3, 1))]
        await asyncio.sleep(0.02)
        session.release.set()
        await asyncio.gather(first, *tasks)

    asyncio.run(scenario())
    assert order == [3, 1, 2]


def test_timeouts_reject_and_deadlines_drop_without_computing(executor) -> None:
    session = FakeSession()

    async def scenario():
        scheduler = _scheduler(
            "dynamic_batching { default_queue_policy { default_timeout_microseconds: 20000 } }",
            session,
            executor,
        )
        first = await _busy(scheduler, session)
        timed = asyncio.create_task(scheduler.submit(_feeds(1), 1, ["y"]))
        late = asyncio.create_task(scheduler.submit(_feeds(2), 1, ["y"], deadline_s=0.01))
        await asyncio.sleep(0.1)
        session.release.set()
        await first
        with pytest.raises(QueueTimeout, match="timed out after waiting"):
            await timed
        with pytest.raises(DeadlineExceeded, match="not computed"):
            await late

    asyncio.run(scenario())
    assert session.batches == [1]  # neither was run


def test_different_shapes_never_share_a_batch(executor) -> None:
    session = FakeSession()

    async def scenario():
        scheduler = _scheduler("dynamic_batching { }", session, executor)
        first = await _busy(scheduler, session)
        wide = {"x": np.ones((1, 3), np.float32)}
        tasks = [
            asyncio.create_task(scheduler.submit(_feeds(1), 1, ["y"])),
            asyncio.create_task(scheduler.submit(wide, 1, ["y"])),
            asyncio.create_task(scheduler.submit(_feeds(2), 1, ["y"])),
        ]
        await asyncio.sleep(0.02)
        session.release.set()
        await asyncio.gather(first, *tasks)

    asyncio.run(scenario())
    assert session.batches == [1, 2, 1]


def test_job_queue_levels_and_capacity() -> None:
    batching = _config(
        "dynamic_batching { priority_levels: 3 default_priority_level: 2 "
        "default_queue_policy { max_queue_size: 5 } }"
    ).dynamic_batching
    queue = JobQueue("fake", batching, 100)
    assert queue.level_of(0) == 2 and queue.level_of(3) == 3
    assert queue.capacity == 15
    with pytest.raises(Exception, match=r"outside 1\.\.3"):
        queue.level_of(4)


def test_pace_learns_from_batches_after_each_instances_first() -> None:
    pace = Pace(instances=2)
    pace.record(8, 900_000_000)  # first batches: one-off costs, left out
    pace.record(8, 900_000_000)
    assert not pace.known and pace.wait_ns(100) == 0
    pace.record(8, 8_000_000)  # 1 ms an item on one instance
    assert pace.wait_ns(10) == pytest.approx(5_000_000)  # two instances share the items
    for _ in range(50):
        pace.record(2, 4_000_000)  # small batches of 2 ms an item take over
    assert pace.wait_ns(10) == pytest.approx(10_000_000, rel=0.01)


def test_a_pace_unrenewed_for_a_while_is_learned_anew() -> None:
    now = [0.0]
    pace = Pace(instances=1, clock=lambda: now[0])
    pace.record(8, 900_000_000)  # the first batch, left out
    for _ in range(20):
        pace.record(8, 800_000_000)  # 100 ms an item: the cores were shared with a burst
    assert pace.wait_ns(10) == pytest.approx(1e9)
    now[0] = STALE_S + 1  # idle since: nothing is refused on that old figure
    assert not pace.known and pace.wait_ns(10) == 0
    pace.record(8, 8_000_000)  # the next batch sets the pace alone
    assert pace.wait_ns(10) == pytest.approx(10_000_000)


def test_a_pace_falls_faster_than_it_rises() -> None:
    pace = Pace(instances=1)
    pace.record(8, 1)  # the first batch, left out
    pace.record(8, 800_000_000)  # 100 ms an item while the cores were shared
    for _ in range(4):
        pace.record(8, 8_000_000)  # then 1 ms an item
    assert pace.wait_ns(10) < 0.1 * 1e9  # a tenth of the old figure after four batches
    for _ in range(4):
        pace.record(8, 800_000_000)
    assert pace.wait_ns(10) < 0.7 * 1e9  # back up more slowly


def test_a_request_the_queue_would_hold_too_long_is_refused_at_once(executor) -> None:
    session = FakeSession(seconds=0.02)  # 20 ms a batch of at most 8: 2.5 ms an item

    async def scenario() -> tuple[list, list]:
        instances = [PlainInstance(session)]  # type: ignore[arg-type]
        scheduler = Scheduler(
            "fake", _config("dynamic_batching { }"), instances, executor, ModelStats(), 1024,
            max_queue_wait_ms=110,
        )  # fmt: skip
        for _ in range(3):  # the first batch is left out of the pace; then two of 8 items
            await asyncio.gather(*(scheduler.submit(_feeds(1), 1, ["y"]) for _ in range(8)))
        first = await _busy(scheduler, session)
        waiting = [asyncio.create_task(scheduler.submit(_feeds(1), 8, ["y"])) for _ in range(4)]
        await asyncio.sleep(0.01)
        # 32 items ahead are about 80 ms of work: within 110 ms, but not within a 50 ms deadline
        deadline = scheduler.submit(_feeds(1), 1, ["y"], deadline_s=0.05)
        with pytest.raises(ServerBusy, match="its deadline of 50 ms"):
            await deadline
        with (
            pytest.raises(ServerBusy, match="32 items are queued ahead"),
            scheduler.reserve(1, deadline_s=0.05),
        ):
            pass
        # Admitted and having its images decoded, a request counts as queued for later ones.
        with (
            scheduler.reserve(8),
            pytest.raises(ServerBusy, match="40 items are queued ahead"),
            scheduler.reserve(8),
        ):
            pass
        more = [asyncio.create_task(scheduler.submit(_feeds(1), 8, ["y"])) for _ in range(2)]
        await asyncio.sleep(0.01)
        refused = [task.exception() for task in more if task.done()]
        session.release.set()
        await first
        return await asyncio.gather(*waiting, *[t for t in more if not t.done()]), refused

    served, refused = asyncio.run(scenario())
    assert len(served) == 5  # 40 items: about 100 ms; 48 would be about 120 ms
    assert len(refused) == 1 and "max_queue_wait_ms" in str(refused[0])


@pytest.mark.parametrize("run_s", [0.0, 0.01])
def test_a_quiet_version_runs_a_short_request_at_once_on_the_loop_thread(executor, run_s) -> None:
    """One caller at a time: a short run goes straight in on the event loop's thread (no hand-off
    to an inference thread and back). A request right after another one's run, or a model
    whose runs are long (10 ms here, past INLINE_MAX_RUN_NS), goes through the batcher."""
    session = FakeSession(run_s)
    loop_thread = threading.get_ident()

    async def scenario() -> tuple[bool, bool]:
        scheduler = _scheduler("dynamic_batching { }", session, executor)
        for value in range(3):  # the pace is learned from the batches after the first
            await scheduler.submit(_feeds(value), 1, ["y"])
        at_once = scheduler.enqueue(_feeds(7), 1, ["y"])  # the loop has not slept since
        answered_at_once = at_once.done()
        assert (await at_once).outputs["y"][0, 0] == 14
        await asyncio.sleep(0.01)  # the loop sleeps: nothing else is waiting
        quiet = scheduler.enqueue(_feeds(8), 1, ["y"])
        answered_quiet = quiet.done()
        assert (await quiet).outputs["y"][0, 0] == 16
        return answered_at_once, answered_quiet

    answered_at_once, answered_quiet = asyncio.run(scenario())
    assert not answered_at_once and session.threads[3] != loop_thread
    short = run_s < INLINE_MAX_RUN_NS / 1e9
    assert answered_quiet == short
    assert (session.threads[4] == loop_thread) == short
