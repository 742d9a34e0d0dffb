"""Giving freed memory back: when a trim is due, and that it really returns memory."""

from __future__ import annotations

import ctypes

from deepserve.server.runtime.memory import MemoryReturner, resident_bytes

MIB = 1 << 20


class FakeProcess:
    """A resident size that trims bring down to what is in use."""

    def __init__(self) -> None:
        self.resident = 100 * MIB
        self.in_use = 100 * MIB
        self.now = 0.0
        self.trims = 0

    def trim(self) -> None:
        self.trims += 1
        self.resident = self.in_use


def _returner(process: FakeProcess) -> MemoryReturner:
    return MemoryReturner(
        64 * MIB, trim=process.trim, resident=lambda: process.resident, clock=lambda: process.now
    )


def test_what_a_storm_leaves_is_given_back_a_moment_after_it() -> None:
    process = FakeProcess()
    returner = _returner(process)
    process.resident = 180 * MIB  # a storm, still going on: its memory is in use
    process.in_use = 180 * MIB
    returner.check()
    assert process.trims == 1 and process.resident == 180 * MIB
    process.now = 1.0
    process.in_use = 100 * MIB  # the storm is over: its memory freed but held
    returner.check()  # the first trim gave nothing: the next waits 2 s
    assert process.trims == 1
    process.now = 2.0
    returner.check()
    assert process.trims == 2 and process.resident == 100 * MIB
    assert returner.returned == 80 * MIB


def test_memory_in_use_is_tried_less_and_less_often() -> None:
    process = FakeProcess()
    returner = _returner(process)
    process.resident = process.in_use = 400 * MIB  # models loaded: in use for good
    for second in range(200):
        process.now = float(second)
        returner.check()
    assert process.trims == 27  # at 0, 2, 6 and 14 s, then every 8 s: waits double to 8 s


def test_the_requests_that_held_the_memory_leaving_brings_a_trim_at_once() -> None:
    process = FakeProcess()
    requests = [0]
    returner = MemoryReturner(
        64 * MIB,
        trim=process.trim,
        resident=lambda: process.resident,
        held=lambda: requests[0],
        clock=lambda: process.now,
    )
    process.resident = process.in_use = 600 * MIB  # a storm: its requests hold 500 MiB
    requests[0] = 500 * MIB
    for second in range(30):  # long enough for the waits to reach their longest
        process.now = float(second)
        returner.check()
    trims = process.trims
    process.now = 30.0
    process.in_use, requests[0] = 100 * MIB, 0  # over: freed but held by the allocator
    returner.check()
    assert process.trims == trims + 1 and process.resident == 100 * MIB


def test_growth_brings_the_checks_back_to_every_second() -> None:
    process = FakeProcess()
    returner = _returner(process)
    process.resident = process.in_use = 400 * MIB
    for second in range(100):
        process.now = float(second)
        returner.check()
    trims = process.trims
    process.now = 100.0
    process.resident = 600 * MIB  # a storm, freed at once
    returner.check()
    assert process.trims == trims + 1 and process.resident == 400 * MIB


def test_off_with_a_step_of_zero() -> None:
    process = FakeProcess()
    returner = MemoryReturner(0, trim=process.trim, resident=lambda: process.resident)
    process.resident = 10_000 * MIB
    returner.check()
    assert process.trims == 0


def test_the_real_trim_returns_freed_memory() -> None:
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    libc.malloc_trim(0)  # what earlier tests freed would otherwise serve the blocks below
    before = resident_bytes()
    blocks = [libc.malloc(4096) for _ in range(50_000)]  # 200 MiB of small blocks: the heap
    for block in blocks:
        ctypes.memset(block, 1, 4096)
    grown = resident_bytes()
    for block in blocks[:-1]:  # the last one keeps the heap's top: only a trim gives it back
        libc.free(block)
    held = resident_bytes()
    returner = MemoryReturner(64 * MIB)
    returner._base = before  # as if started before the blocks
    returner.check()
    after = resident_bytes()
    libc.free(blocks[-1])
    assert grown - before > 100 * MIB
    assert held - before > (grown - before) / 2  # freed, but held by the allocator
    assert after - before < (grown - before) / 4
