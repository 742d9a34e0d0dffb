"""Costly images in worker processes: the answer is the one a thread would give, limits are
errors with their messages, a caller that goes away stops the worker, and a worker that dies
costs its call only."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from deepserve.server.core import imaging
from deepserve.server.core.auth import ConfigurationError
from deepserve.server.core.decode_processes import DecodeJob, DecodeProcesses, worker_cpus
from deepserve.server.core.decode_work import DecodeBounds
from deepserve.server.protocol.errors import InvalidInput, LimitExceeded
from deepserve.server.protocol.types import ImageSource

from ..hostile_images import encoded, many_scans_jpeg
from .test_decode_bombs import tree_cpu_seconds

LIMITS = imaging.ImageLimits(
    max_pixels=40_000_000, max_request_bytes=1 << 30, formats=("PNG", "JPEG"),
    work=DecodeBounds(max_scans=64, max_strips=64, cpu_ms=20_000),
)  # fmt: skip
BOMB = many_scans_jpeg(64, 6000, 6000)  # about 2.4 s of CPU to decode here


def _job(data: bytes, limits: imaging.ImageLimits = LIMITS) -> DecodeJob:
    return DecodeJob([ImageSource(data)], limits, 28, 28, 1)


@pytest.fixture
def workers() -> Iterator[DecodeProcesses]:
    processes = DecodeProcesses(1, 4)
    yield processes
    processes.close()


def _worker_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat[1]) == os.getpid() and b"spawn_main" in command:
                pids.append(int(entry.name))
    return pids


def test_a_worker_gives_what_a_thread_gives(workers: DecodeProcesses) -> None:
    image = encoded("PNG", 48, 32)
    batch, sizes = asyncio.run(workers.decode(_job(image)))
    opened = imaging.open_all([ImageSource(image)], LIMITS)
    expected, expected_sizes = imaging.prepare(opened, 28, 28, 1)
    assert np.array_equal(batch, expected) and sizes == expected_sizes == [(32, 48)]


def test_limits_in_a_worker_are_the_same_errors(workers: DecodeProcesses) -> None:
    tight = imaging.ImageLimits(
        LIMITS.max_pixels, LIMITS.max_request_bytes, LIMITS.formats,
        DecodeBounds(max_scans=64, max_strips=64, cpu_ms=50),
    )  # fmt: skip
    with pytest.raises(LimitExceeded, match=r"image 0: decoding took more .* 50 ms"):
        asyncio.run(workers.decode(_job(BOMB, tight)))
    with pytest.raises(InvalidInput, match=r"image 0: .* not an image"):
        asyncio.run(workers.decode(_job(b"not an image at all")))


def test_a_caller_that_goes_away_stops_the_worker(workers: DecodeProcesses) -> None:
    asyncio.run(workers.decode(_job(encoded("PNG"))))  # the worker is up
    before = tree_cpu_seconds(os.getpid())

    async def give_up() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(workers.decode(_job(BOMB)), 0.3)

    asyncio.run(give_up())
    started = time.monotonic()
    asyncio.run(workers.decode(_job(encoded("PNG"))))  # waits for the worker to be free
    waited = time.monotonic() - started
    spent = tree_cpu_seconds(os.getpid()) - before
    print(f"the bomb's worker: {spent:.2f} s of CPU; the next call waited {waited:.2f} s")
    assert spent < 1.0  # the whole decode takes about 2.4 s


def test_a_worker_that_dies_costs_its_call_only(workers: DecodeProcesses) -> None:
    asyncio.run(workers.decode(_job(encoded("PNG"))))

    async def killed() -> None:
        call = asyncio.ensure_future(workers.decode(_job(BOMB)))
        await asyncio.sleep(0.3)
        for pid in _worker_pids():
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(InvalidInput, match="decoder ended without an answer"):
            await call

    asyncio.run(killed())
    batch, _ = asyncio.run(workers.decode(_job(encoded("PNG"))))
    assert batch.shape == (1, 28, 28, 1)


def test_decode_worker_cpus_are_read_and_checked_when_the_server_starts() -> None:
    allowed = sorted(os.sched_getaffinity(0))
    assert worker_cpus("") == frozenset()
    assert worker_cpus(f"{allowed[0]}") == {allowed[0]}
    assert worker_cpus(f"{allowed[0]}-{allowed[-1]}") == set(allowed)
    assert worker_cpus(f" {allowed[-1]}, {allowed[0]} ") == {allowed[0], allowed[-1]}
    with pytest.raises(ConfigurationError, match="'two' is not a CPU number or a range"):
        worker_cpus("two")
    with pytest.raises(ConfigurationError, match=r"may not run on CPUs \[4096\].* it may run on"):
        worker_cpus("4096")
    assert os.sched_getaffinity(0) == set(allowed)  # checking changed nothing here


def test_workers_given_cpus_start_and_run_on_them() -> None:
    last = max(os.sched_getaffinity(0))
    processes = DecodeProcesses(1, 2, frozenset({last}))
    try:
        batch, _ = asyncio.run(processes.decode(_job(encoded("PNG", 28, 28))))
        assert batch.shape == (1, 28, 28, 1)
        (worker,) = _worker_pids()
        assert os.sched_getaffinity(worker) == {last}
    finally:
        processes.close()
