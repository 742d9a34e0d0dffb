"""Where the Vision API's images are decoded: threads of its own (so costly images never hold
the threads that post-process answers or load models), in two lanes. Every request's headers
are read in the light lane; images whose decode is estimated from the header to be costly (a
large photo, a progressive JPEG of many scans, a run-length BMP) finish in the heavy lane: fewer
worker processes at a low priority, with a bounded queue, so a client sending costly images
delays other costly images, never the small ones."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from PIL import Image

from ..protocol.errors import ServerBusy
from .decode_processes import Decoded, DecodeJob, DecodeProcesses
from .decode_work import Stop, estimated_ms


@dataclass(frozen=True)
class LaneSizes:
    light_threads: int
    heavy_processes: int
    heavy_waiting: int
    """Costly requests that may wait for the heavy lane; past it RESOURCE_EXHAUSTED."""
    heavy_ms: float
    """A request whose images are estimated to take longer than this goes to the heavy lane."""
    light_waiting: int
    """Requests that may wait for the light lane; past it RESOURCE_EXHAUSTED."""
    heavy_cpus: frozenset[int] = frozenset()
    """CPUs the heavy lane's workers run on (empty: any)."""


class _Costly:
    """Headers read: the images are to be decoded in the heavy lane."""


class DecodeLanes:
    def __init__(self, sizes: LaneSizes) -> None:
        self._sizes = sizes
        self._light = ThreadPoolExecutor(sizes.light_threads, thread_name_prefix="decode")
        # Calls that went away keep their worker's slot until it stops: one more a worker.
        self._heavy = DecodeProcesses(
            sizes.heavy_processes, sizes.heavy_waiting + sizes.heavy_processes, sizes.heavy_cpus
        )
        self._heavy_queued = 0
        self._light_queued = 0

    async def run(
        self,
        open_images: Callable[[Stop], list[Image.Image]],
        decode: Callable[[list[Image.Image], Stop], Decoded],
        job: DecodeJob,
    ) -> Decoded:
        """`open_images` (headers and limits) on a light thread, then `decode` there too, or
        `job` in a heavy worker where the images are costly; stopped when the caller goes
        away."""
        loop = asyncio.get_running_loop()
        stop = Stop()

        def start(stop: Stop) -> Decoded | _Costly:
            opened = open_images(stop)
            if sum(estimated_ms(image) for image in opened) > self._sizes.heavy_ms:
                return _Costly()
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
            if not isinstance(started, _Costly):
                return started
            if self._heavy_queued >= self._sizes.heavy_waiting:
                raise ServerBusy(
                    f"{self._heavy_queued} costly images are already waiting to be decoded "
                    "(heavy_decodes_waiting); try again later or send smaller images"
                )
            self._heavy_queued += 1
            try:
                return await self._heavy.decode(job)
            finally:
                self._heavy_queued -= 1
        finally:
            stop.set()  # a caller that went away (or ran out of time) stops the decode

    def close(self) -> None:
        self._light.shutdown(wait=False, cancel_futures=True)
        self._heavy.close()
