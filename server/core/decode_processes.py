"""Costly images decoded in processes of their own. A decoder working through a bomb allocates
and frees hundreds of megabytes a second and takes the interpreter lock between its reads; in
the server's process every thread felt that (ordinary calls' p99 went from about 1.3 to 4 ms
while one client sent bombs, whatever the decoding thread's priority). A worker process at a low
priority feels it alone, and an image that crashes its decoder ends a worker, not the server.

Each call gets a stop flag in memory shared with the workers: set when the caller goes away, the
worker's budgeted reads see it and stop, as a thread's would."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..protocol.errors import InvalidInput, ServerBusy
from ..protocol.types import ImageSource
from . import imaging
from .auth import ConfigurationError

log = logging.getLogger(__name__)

WORKER_NICENESS = 10
"""Where ordinary calls want a core, the scheduler gives the workers about a tenth of it (a
costly image's budget counts its own CPU time, never its wait), and large photos sent while the
server is busy still get decoded."""


@dataclass(frozen=True)
class DecodeJob:
    """What a worker needs to open, decode and resize one request's images (all picklable)."""

    images: list[ImageSource]
    limits: imaging.ImageLimits
    height: int
    width: int
    channels: int


Decoded = tuple[np.ndarray, list[tuple[int, int]]]

# In a worker: the stop flags it shares with the server, one byte a call, and glibc's trim.
_stop_flags: Any = None
_trim: Callable[[int], int] | None = None
_TRIM_ABOVE_BYTES = 256 << 20


class _SharedStop:
    """A call's stop flag as a worker sees it."""

    def __init__(self, slot: int) -> None:
        self._slot = slot

    def is_set(self) -> bool:
        return bool(_stop_flags[self._slot])


def _start_worker(flags: Any, cpus: frozenset[int]) -> None:
    global _stop_flags, _trim
    _stop_flags = flags
    with contextlib.suppress(OSError, AttributeError):
        _trim = ctypes.CDLL("libc.so.6").malloc_trim
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)
    if cpus:
        os.sched_setaffinity(0, cpus)  # checked by worker_cpus when the server started


def worker_cpus(text: str) -> frozenset[int]:
    """The CPUs of --decode-worker-cpus ("3", "2-3", "1,6-7"; empty: any), checked now: the
    workers start with the first costly image, too late to refuse a wrong setting."""
    cpus: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        first, _, last = part.partition("-")
        try:
            low, high = int(first), int(last or first)
        except ValueError:
            raise ConfigurationError(
                f"--decode-worker-cpus: '{part}' is not a CPU number or a range like 2-3"
            ) from None
        cpus.update(range(low, high + 1))
    if cpus:
        # A thread's affinity is its own: trying it on a passing thread changes nothing else.
        problem: list[OSError] = []
        trial = threading.Thread(target=_try_affinity, args=(cpus, problem))
        trial.start()
        trial.join()
        if problem:
            raise ConfigurationError(
                f"--decode-worker-cpus {text}: this process may not run on CPUs "
                f"{sorted(cpus)} ({problem[0].strerror}); it may run on "
                f"{sorted(os.sched_getaffinity(0))}"
            )
    return frozenset(cpus)


def _try_affinity(cpus: set[int], problem: list[OSError]) -> None:
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as exc:
        problem.append(exc)


def _resident_bytes() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _give_back_memory() -> None:
    """A bomb's buffers, freed, stay in the allocator: give them back after a large decode."""
    with contextlib.suppress(OSError):
        if _trim is not None and _resident_bytes() > _TRIM_ABOVE_BYTES:
            _trim(0)


def _decode(slot: int, job: DecodeJob) -> Decoded:
    """In a worker: the request's images opened again from their bytes, decoded and resized."""
    try:
        opened = imaging.open_all(job.images, job.limits, _SharedStop(slot))  # type: ignore[arg-type]
        return imaging.prepare(opened, job.height, job.width, job.channels)
    finally:
        _give_back_memory()


class DecodeProcesses:
    """`processes` workers, started with the first costly image (about 0.9 s here, then about
    1 ms a call), and `calls` stop flags, one for each call in a worker or waiting for one.
    Spawned, not forked (a fork of a process running gRPC's threads is not safe): as with any
    spawning program, a script that starts a server in-process must guard its main code with
    `if __name__ == "__main__":`, or each worker would run it again."""

    def __init__(self, processes: int, calls: int, cpus: frozenset[int] = frozenset()) -> None:
        self._processes = processes
        self._cpus = cpus
        self._context = multiprocessing.get_context("spawn")
        self._flags = self._context.RawArray(ctypes.c_ubyte, calls)
        self._free = list(range(calls))
        self._lock = threading.Lock()  # slots come back on the executor's own thread
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self._processes,
                mp_context=self._context,
                initializer=_start_worker,
                initargs=(self._flags, self._cpus),
            )
            if self._cpus:
                self._spawn_on_own_cpus(self._pool)
        return self._pool

    def _spawn_on_own_cpus(self, pool: ProcessPoolExecutor) -> None:
        """A worker is spawned by the thread that submits to the pool and starts on that
        thread's CPUs: spawned from a thread on the workers' own CPUs, their start (imports,
        about 0.9 s of CPU) stays off the cores that serve as well."""

        def spawn() -> None:
            os.sched_setaffinity(0, self._cpus)
            for _ in range(self._processes):
                pool.submit(int)  # a worker each: none is idle yet

        spawner = threading.Thread(target=spawn, name="decode-worker-spawn")
        spawner.start()
        spawner.join()

    def _take_slot(self) -> int:
        with self._lock:
            if not self._free:
                raise ServerBusy(
                    "every decoding process is taken by costly images; try again later or "
                    "send smaller images"
                )
            slot = self._free.pop()
        self._flags[slot] = 0
        return slot

    def _release(self, slot: int) -> None:
        with self._lock:
            self._free.append(slot)

    async def decode(self, job: DecodeJob) -> Decoded:
        """The job's batch and sizes; cancelled, the worker stops at its next read."""
        slot = self._take_slot()
        try:
            future: Future[Decoded] = self._executor().submit(_decode, slot, job)
        except BaseException:
            self._release(slot)
            raise
        # The slot is free again only when the worker is done with it, whatever the caller does.
        future.add_done_callback(lambda _: self._release(slot))
        try:
            return await asyncio.wrap_future(future)
        except BrokenProcessPool:
            self._replace_broken_pool()
            raise InvalidInput(
                "the image's decoder ended without an answer (it crashed or ran out of memory)"
            ) from None
        finally:
            with self._lock:  # a slot already given back may be another call's by now
                if not future.done():
                    self._flags[slot] = 1

    def _replace_broken_pool(self) -> None:
        broken, self._pool = self._pool, None
        if broken is not None:
            log.warning("a decoding process ended; starting new ones")
            broken.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        for slot in range(len(self._flags)):
            self._flags[slot] = 1
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
