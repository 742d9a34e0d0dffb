"""The drain on SIGTERM, after health has turned NOT_SERVING, in three steps so that no call is
cut on either transport:

1. new calls are refused at once with UNAVAILABLE (clients take them to another replica) while
   every call already accepted is answered, for up to the grace period;
2. refusals are held: a client that sends again as soon as it is refused now waits for its
   answer, so after a short quiet nothing is on its way in;
3. the listeners close and every connection is told to go away (gRPC GOAWAY, HTTP
   `Connection: close`), then the held refusals are answered; a retry goes to a new
   connection, which the closed listener refuses cleanly. Open streams (health watches) end
   last.

Step 2 is there because gRPC's core cancels any call that reaches it after its shutdown has
begun and before the client has read the GOAWAY.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc

from .http.server import EmbeddedServer
from .observability.observe import Observer

QUIET_S = 0.05
"""How long no call may arrive before the listeners close."""
HOLD_AT_MOST_S = 1.0
"""A client that keeps opening calls (none waiting for its answers) is not waited for longer."""
POLL_S = 0.005


async def drain(
    observer: Observer,
    grpc_server: grpc.aio.Server,
    http: EmbeddedServer | None,
    http_task: asyncio.Task[None] | None,
    until: float,
) -> None:
    """Drain both transports by `until` (a `time.monotonic()` deadline); `observer.draining`
    is already set."""
    await _wait(lambda: observer.in_flight == 0, until)
    observer.hold_refusals()
    await wait_for_quiet(observer, min(until, time.monotonic() + HOLD_AT_MOST_S))
    stopping = asyncio.create_task(grpc_server.stop(max(until - time.monotonic(), 0.5)))
    await asyncio.sleep(0)  # the gRPC listener is closed and GOAWAY is on its way
    if http is not None:
        http.should_exit = True
        await _wait(lambda: not any(s.is_serving() for s in http.servers), until)
    observer.release_refusals()
    await _wait(lambda: observer.in_flight == 0, until)
    await asyncio.sleep(QUIET_S)  # the answers are written before the streams are cut
    await grpc_server.stop(None)
    await stopping
    if http_task is not None:
        await http_task


async def _wait(done: Callable[[], bool], until: float) -> None:
    while not done() and time.monotonic() < until:
        await asyncio.sleep(POLL_S)


async def wait_for_quiet(observer: Observer, until: float) -> None:
    """Until every call is a held refusal and none has arrived for QUIET_S."""
    arrivals, since = observer.arrivals, time.monotonic()
    while (now := time.monotonic()) < until:
        if observer.arrivals != arrivals or observer.in_flight != observer.held:
            arrivals, since = observer.arrivals, now
        elif now - since >= QUIET_S:
            return
        await asyncio.sleep(POLL_S)
