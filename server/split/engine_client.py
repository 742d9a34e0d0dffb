"""A front end's line to the engine: one ZeroMQ DEALER socket, replies matched to requests by
id. When the engine goes away every request waiting on it fails at once with UNAVAILABLE
(ZeroMQ reports the disconnect), and sends fail fast until it is back."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from ..errors import ErrorKind
from . import wire

log = logging.getLogger("deepserve.frontend")

ENGINE_GONE = "the server's engine process is not running; retry shortly"


class EngineClient:
    def __init__(
        self,
        address: str,
        identity: str,
        on_table: Callable[[dict[str, Any]], None],
        on_disconnect: Callable[[], None],
    ) -> None:
        self.address = address
        self._on_table = on_table
        self._on_disconnect = on_disconnect
        self._context = zmq.asyncio.Context()
        self._socket = self._context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.ROUTING_ID, identity.encode())
        self._socket.setsockopt(zmq.IMMEDIATE, 1)  # queue nothing for an engine not connected
        self._socket.setsockopt(zmq.LINGER, 0)
        # No message limit: the engine's queues bound the work, and a dropped reply would hang.
        self._socket.setsockopt(zmq.SNDHWM, 0)
        self._socket.setsockopt(zmq.RCVHWM, 0)
        self._socket.setsockopt(zmq.RECONNECT_IVL, 100)
        self._socket.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[tuple[Any, list[Any]]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.connected = False
        self._last_table = 0.0

    def start(self) -> None:
        # Connected means the ZeroMQ handshake is done: then a send is not refused.
        watched = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
        monitor = self._socket.get_monitor_socket(watched)
        self._socket.connect(self.address)
        self._tasks = [
            asyncio.create_task(self._read()),
            asyncio.create_task(self._watch(monitor)),
            asyncio.create_task(self._keep_registered()),
        ]

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self.notify(["bye", 0])
        self._socket.close(linger=100)

    # ---- sending -------------------------------------------------------------------------------

    def notify(self, header: list[Any]) -> None:
        """A one-way message (statistics, call counts); dropped when the engine is away."""
        sent = self._socket.send(wire.pack(header), flags=zmq.NOBLOCK)
        sent.add_done_callback(_dropped_when_away)

    async def call(self, header: list[Any], frames: Sequence[Any] = ()) -> tuple[Any, list[Any]]:
        """Send [kind, *fields] (the id is put in) and wait for the body and frames back."""
        request_id = next(self._ids)
        header[1:1] = [request_id]
        future: asyncio.Future[tuple[Any, list[Any]]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self._socket.send_multipart(
                [wire.pack(header), *frames], flags=zmq.NOBLOCK, copy=False
            )
        except zmq.Again:
            del self._pending[request_id]
            raise wire.EngineError(ErrorKind.UNAVAILABLE, ENGINE_GONE) from None
        try:
            return await future
        finally:
            self._pending.pop(request_id, None)

    # ---- receiving -----------------------------------------------------------------------------

    async def _read(self) -> None:
        while True:
            frames = await self._socket.recv_multipart(copy=False)
            request_id, status, body = wire.unpack(frames[0].buffer)
            if status == "table":
                self._last_table = time.monotonic()
                self._on_table(body)
                continue
            future = self._pending.get(request_id)
            if future is None or future.done():
                continue  # its caller gave up (deadline, cancelled call)
            if status == "ok":
                future.set_result((body, frames[1:]))
            else:
                future.set_exception(wire.EngineError(ErrorKind(status), str(body)))

    async def _watch(self, monitor: zmq.asyncio.Socket) -> None:
        while True:
            event = parse_monitor_message(await monitor.recv_multipart())
            if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.connected = True
                self.notify(["hello", 0])
            elif event["event"] == zmq.EVENT_DISCONNECTED:
                self.connected = False
                log.error("the engine process went away; failing %d request(s)", len(self._pending))
                for future in self._pending.values():
                    if not future.done():
                        future.set_exception(
                            wire.EngineError(
                                ErrorKind.UNAVAILABLE,
                                "the server's engine process stopped while this request was in it",
                            )
                        )
                self._pending.clear()
                self._on_disconnect()

    async def _keep_registered(self) -> None:
        """The engine pushes its table every second to the front ends it knows; one that gets
        none (an engine started anew, a lost hello) says hello again."""
        while True:
            await asyncio.sleep(1.0)
            if self.connected and time.monotonic() - self._last_table > 2.5:
                self.notify(["hello", 0])


def _dropped_when_away(sent: asyncio.Future[Any]) -> None:
    if not sent.cancelled():
        sent.exception()  # zmq.Again: no engine connected; the message is not needed then
