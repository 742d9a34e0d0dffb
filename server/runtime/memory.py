"""Giving freed memory back to the system after a storm of large requests.

glibc's allocator keeps the pages of blocks it has freed inside its per-thread arenas: after
rounds of refused 63 MiB messages (the requests themselves long gone) the server stayed at
750 MB, and `malloc_trim(0)` brought it back to its 113 MB at start. Elsewhere than glibc there
is nothing to call, and nothing is done."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 1.0
MAX_WAIT_S = 8.0
_PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int:
    """This process's resident memory (one read of /proc; 0 where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _malloc_trim() -> Callable[[], None] | None:
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


class MemoryReturner:
    """Checks the resident size every second and gives freed memory back (on a worker thread:
    trimming a large heap takes milliseconds) while the process is more than `step_bytes` above
    the lowest size it has come back to. A trim that gives little back (the memory is in use)
    doubles the wait before the next, up to 8 s; growth by another step, or the requests that
    held the memory at that trim (`held`: request bytes in flight) being gone, brings it back
    to a second, so what a storm leaves is returned a moment after it ends. `step_bytes` 0: off."""

    def __init__(
        self,
        step_bytes: int,
        trim: Callable[[], None] | None = None,
        resident: Callable[[], int] = resident_bytes,
        held: Callable[[], int] = lambda: 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._step = step_bytes
        self._trim = (trim or _malloc_trim()) if step_bytes > 0 else None
        self._resident = resident
        self._clock = clock
        self._held = held
        self._held_at_trim = 0
        self._base = self._last = resident()
        self._wait = CHECK_INTERVAL_S
        self._due = clock()
        self.returned = 0
        """Bytes given back so far."""

    def check(self) -> None:
        """One check, and a trim when due: call off the event loop."""
        if self._trim is None:
            return
        before, now, held = self._resident(), self._clock(), self._held()
        # Growing again (something large is going on), or what was in use is now free.
        if before > self._last + self._step or held < self._held_at_trim - self._step:
            self._wait = CHECK_INTERVAL_S
            self._due = min(self._due, now)
        if now < self._due or before <= self._base + self._step:
            return
        self._trim()
        after = self._resident()
        given = max(before - after, 0)
        self.returned += given
        productive = given >= self._step // 2
        self._wait = CHECK_INTERVAL_S if productive else min(self._wait * 2, MAX_WAIT_S)
        self._due, self._last, self._held_at_trim = now + self._wait, after, held
        self._base = min(self._base, after)
        if productive:
            log.info("gave %d MiB of freed memory back", given >> 20)

    async def run(self) -> None:
        if self._trim is None:
            return
        while True:
            await asyncio.sleep(CHECK_INTERVAL_S)
            await asyncio.to_thread(self.check)
