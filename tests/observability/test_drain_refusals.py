"""The observer's part in the drain, in process: refusals at once while accepted calls finish,
then held until the listeners have closed, and the quiet the drain waits for."""

from __future__ import annotations

import asyncio
import time

import pytest

from deepserve.server.drain import QUIET_S, wait_for_quiet
from deepserve.server.observability.observe import Observer
from deepserve.server.protocol.errors import ShuttingDown
from deepserve.server.settings import ServerSettings


async def _refused_call(observer: Observer) -> float:
    """One call as a transport handles it; how long its refusal took."""
    started = time.monotonic()
    with observer.call("ModelInfer", "id", ()) as record:
        try:
            await observer.refuse_if_draining()
        except ShuttingDown:
            record.code = "UNAVAILABLE"
            return time.monotonic() - started
    raise AssertionError("the call was not refused")


def test_refusals_are_immediate_until_held_and_answered_once_released() -> None:
    async def scenario() -> None:
        observer = Observer(ServerSettings())
        await observer.refuse_if_draining()  # serving: nothing happens
        observer.draining = True
        assert await _refused_call(observer) < 0.05
        observer.hold_refusals()
        held = [asyncio.create_task(_refused_call(observer)) for _ in range(3)]
        await asyncio.sleep(0.1)
        assert not any(task.done() for task in held)
        assert observer.held == observer.in_flight == 3
        observer.release_refusals()
        waits = await asyncio.gather(*held)
        assert all(0.1 <= wait < 1.0 for wait in waits)
        assert observer.held == observer.in_flight == 0
        assert observer.cancelled_while_draining == 0

    asyncio.run(scenario())


@pytest.mark.parametrize("still_arriving", [False, True])
def test_the_drain_waits_for_every_call_to_be_held_and_none_to_arrive(
    still_arriving: bool,
) -> None:
    """A client that keeps opening calls holds the close back until the bound, no longer."""

    async def scenario() -> float:
        observer = Observer(ServerSettings())
        observer.draining = True
        observer.hold_refusals()
        held = asyncio.create_task(_refused_call(observer))

        async def keep_arriving() -> None:
            while True:
                observer.start("ModelInfer", "id", ())
                await asyncio.sleep(0.01)

        arriving = asyncio.create_task(keep_arriving()) if still_arriving else None
        started = time.monotonic()
        await wait_for_quiet(observer, started + 0.5)
        waited = time.monotonic() - started
        if arriving is not None:
            arriving.cancel()
        observer.release_refusals()
        await held
        return waited

    waited = asyncio.run(scenario())
    if still_arriving:
        assert waited >= 0.5
    else:
        assert QUIET_S <= waited < 0.3
