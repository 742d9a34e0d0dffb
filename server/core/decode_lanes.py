"""Where the Vision API's images are decoded: threads of its own (so costly images never hold
the threads that post-process answers or load models), in two lanes. Every request's headers
are read in the light lane; images whose decode is estimated from the header to be costly (a
large photo, a progressive JPEG of many scans, a run-length BMP) finish in the heavy lane, which
has fewer threads and a bounded queue, so a client sending costly images delays other costly
images, never the small ones."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from PIL import Image

from ..protocol.errors import ServerBusy
from .decode_work import Stop, estimated_ms

T = TypeVar("T")


@dataclass(frozen=True)
class LaneSizes:
    light_threads: int
    heavy_threads: int
    heavy_waiting: int
    """Costly requests that may wait for the heavy lane; past it RESOURCE_EXHAUSTED."""
    heavy_ms: float
    """A request whose images are estimated to take longer than this goes to the heavy lane."""
    light_waiting: int
    """Requests that may wait for the light lane; past it RESOURCE_EXHAUSTED."""


@dataclass
class _Opened:
    """Headers read, to be decoded in the heavy lane."""

    images: list[Image.Image]


HEAVY_NICENESS = 10
"""The heavy lane's threads run at a low priority: where ordinary calls want a core, the
scheduler gives the lane about a tenth of it (a costly image's budget counts its own CPU time,
never its wait). Not the lowest: a thread that holds the interpreter lock must still get to run
soon, or it would stall every other thread of the process."""


def _yield_to_others() -> None:
    """Lowers the calling thread's priority (Linux: a thread id is a process id to
    setpriority). Elsewhere the lane keeps the process's priority."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HEAVY_NICENESS)


class DecodeLanes:
    def __init__(self, sizes: LaneSizes) -> None:
        self._sizes = sizes
        self._light = ThreadPoolExecutor(sizes.light_threads, thread_name_prefix="decode")
        self._heavy = ThreadPoolExecutor(
            sizes.heavy_threads, thread_name_prefix="decode-heavy", initializer=_yield_to_others
        )
        self._heavy_queued = 0
        self._light_queued = 0

    async def run(
        self,
        open_images: Callable[[Stop], list[Image.Image]],
        decode: Callable[[list[Image.Image], Stop], T],
    ) -> T:
        """`open_images` (headers and limits), then `decode`, on a lane's thread; stopped
        (through `Stop`) when the caller goes away."""
        loop = asyncio.get_running_loop()
        stop = Stop()

        def start(stop: Stop) -> T | _Opened:
            opened = open_images(stop)
            if sum(estimated_ms(image) for image in opened) > self._sizes.heavy_ms:
                return _Opened(opened)
            return decode(opened, stop)

        if self._light_queued >= self._sizes.light_threads + self._sizes.light_waiting:
            raise ServerBusy(
                f"{self._light_queued - self._sizes.light_threads} requests are already waiting "
                "for their images to be decoded (decodes_waiting); try again later"
            )
        self._light_queued += 1
        try:
            try:
                started = await loop.run_in_executor(self._light, start, stop)
            finally:
                self._light_queued -= 1
            if not isinstance(started, _Opened):
                return started
            if self._heavy_queued >= self._sizes.heavy_waiting:
                raise ServerBusy(
                    f"{self._heavy_queued} costly images are already waiting to be decoded "
                    "(heavy_decodes_waiting); try again later or send smaller images"
                )
            self._heavy_queued += 1
            try:
                return await loop.run_in_executor(self._heavy, decode, started.images, stop)
            finally:
                self._heavy_queued -= 1
        finally:
            stop.set()  # a caller that went away (or ran out of time) stops the decode

    def close(self) -> None:
        self._light.shutdown(wait=False, cancel_futures=True)
        self._heavy.shutdown(wait=False, cancel_futures=True)
