"""A front end's line to the engine: one ZeroMQ DEALER socket, replies matched to requests by
id. When the engine goes away every request waiting on it fails at once with UNAVAILABLE
(ZeroMQ reports the disconnect), and sends fail fast until it is back.

Every message is [kind, request_id, records, *fields] (then tensor frames): `records` are the
statistics of the requests finished lately, summed per model version, sent every
RECORDS_DELAY_S and with every message but a submit (so ModelStatistics, which asks every front
end first, counts every request answered before it)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

from ..protocol.errors import ErrorKind
from . import wire
from .pump import Pump

log = logging.getLogger("deepserve.frontend")

ENGINE_GONE = "the server's engine process is not running; retry shortly"
RECORDS_DELAY_S = 0.02


class EngineClient:
    def __init__(
        self,
        address: str,
        identity: str,
        on_table: Callable[[dict[str, Any]], None],
        on_disconnect: Callable[[], None],
    ) -> None:
        self.address = address
        self._identity = identity
        self._on_table = on_table
        self._on_disconnect = on_disconnect
        self._context = zmq.Context()
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[tuple[Any, list[Any]]]] = {}
        self._streams: dict[int, asyncio.Queue[tuple[Any, list[Any]] | BaseException | None]] = {}
        """Calls answered many times ("more" replies, then "ok" or an error)."""
        self._held: list[Any] = []
        """Statistics with something to send: each has take() -> a record for the engine."""
        self._records_due: asyncio.TimerHandle | None = None
        self._pump: Pump | None = None
        self._monitor: Pump | None = None
        self._registering: asyncio.Task[None] | None = None
        self.connected = False
        self._last_table = 0.0

    def start(self) -> None:
        socket = self._context.socket(zmq.DEALER)
        socket.setsockopt(zmq.ROUTING_ID, self._identity.encode())
        socket.setsockopt(zmq.IMMEDIATE, 1)  # queue nothing for an engine not connected
        socket.setsockopt(zmq.LINGER, 0)
        # No message limit: the engine's queues bound the work, and a dropped reply would hang.
        socket.setsockopt(zmq.SNDHWM, 0)
        socket.setsockopt(zmq.RCVHWM, 0)
        socket.setsockopt(zmq.RECONNECT_IVL, 100)
        socket.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        # Connected means the ZeroMQ handshake is done: then a send is not refused.
        monitor = socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
        socket.connect(self.address)
        self._pump = Pump(socket, self._on_reply, self._undelivered)
        self._monitor = Pump(monitor, self._on_event)
        self._registering = asyncio.create_task(self._keep_registered())

    def close(self) -> None:
        if self._registering is not None:
            self._registering.cancel()
        self.notify(["bye"])
        for pump in (self._monitor, self._pump):
            if pump is not None:
                pump.close()

    # ---- sending -------------------------------------------------------------------------------

    def _send(self, kind: str, request_id: int, fields: list[Any], frames: Sequence[Any]) -> None:
        assert self._pump is not None
        if not self.connected:
            raise wire.EngineError(ErrorKind.UNAVAILABLE, ENGINE_GONE)
        records: list[Any] = []
        if kind != "submit":  # a request's answer waits for no statistics: they go on a timer
            records = [source.take() for source in self._held]
            self._held = []
        self._pump.post([wire.pack([kind, request_id, records, *fields]), *frames])

    def _undelivered(self, _: bytes, messages: list[Sequence[Any]], exc: zmq.ZMQError) -> None:
        """The engine went away between the post and the end of the loop's turn."""
        for message in messages:
            future = self._pending.get(wire.unpack(message[0])[1])
            if future is not None and not future.done():
                future.set_exception(wire.EngineError(ErrorKind.UNAVAILABLE, ENGINE_GONE))

    def notify(self, message: list[Any]) -> None:
        """A one-way message [kind, *fields]; dropped when the engine is away."""
        with contextlib.suppress(wire.EngineError):
            self._send(message[0], 0, message[1:], ())

    def hold(self, source: Any) -> None:
        """`source` (statistics, call counts) has something to send: its take() goes with the
        next message but a submit, within RECORDS_DELAY_S."""
        self._held.append(source)
        if self._records_due is None:
            loop = asyncio.get_running_loop()
            self._records_due = loop.call_later(RECORDS_DELAY_S, self._send_records)

    def _send_records(self) -> None:
        self._records_due = None
        if self._held:
            self.notify(["records"])

    async def call(self, message: list[Any], frames: Sequence[Any] = ()) -> tuple[Any, list[Any]]:
        """Send [kind, *fields] and wait for the body and frames of the answer."""
        request_id = next(self._ids)
        future: asyncio.Future[tuple[Any, list[Any]]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            self._send(message[0], request_id, message[1:], frames)
            return await future
        finally:
            self._pending.pop(request_id, None)

    async def stream(
        self, message: list[Any], frames: Sequence[Any] = ()
    ) -> AsyncGenerator[tuple[Any, list[Any]], None]:
        """Send [kind, *fields] and yield the body and frames of each answer until the last.
        Closing the iterator early tells the engine to stop ("cancel")."""
        request_id = next(self._ids)
        answers: asyncio.Queue[tuple[Any, list[Any]] | BaseException | None] = asyncio.Queue()
        self._streams[request_id] = answers
        ended = False
        try:
            self._send(message[0], request_id, message[1:], frames)
            while (answer := await answers.get()) is not None:
                if isinstance(answer, BaseException):
                    ended = True
                    raise answer
                yield answer
            ended = True
        finally:
            self._streams.pop(request_id, None)
            if not ended:
                self.notify(["cancel", request_id])

    # ---- receiving -----------------------------------------------------------------------------

    def _on_reply(self, frames: list[zmq.Frame]) -> None:
        request_id, status, body = wire.unpack(frames[0].buffer)
        if status == "table":
            self._last_table = time.monotonic()
            self._on_table(body)
            return
        if status == "flush":  # the engine answers ModelStatistics or a scrape: send it all
            self.notify(["flushed", request_id])
            return
        answers = self._streams.get(request_id)
        if answers is not None:
            if status == "more":
                answers.put_nowait((body, frames[1:]))
            elif status == "ok":
                answers.put_nowait(None)
            else:
                answers.put_nowait(wire.EngineError(ErrorKind(status), str(body)))
            return
        future = self._pending.get(request_id)
        if future is None or future.done():
            return  # its caller gave up (deadline, cancelled call)
        if status == "ok":
            future.set_result((body, frames[1:]))
        else:
            future.set_exception(wire.EngineError(ErrorKind(status), str(body)))

    def _on_event(self, frames: list[zmq.Frame]) -> None:
        event = parse_monitor_message([frame.bytes for frame in frames])["event"]
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self.connected = True
            self.notify(["hello"])
        elif event == zmq.EVENT_DISCONNECTED:
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
            for answers in self._streams.values():
                answers.put_nowait(
                    wire.EngineError(
                        ErrorKind.UNAVAILABLE,
                        "the server's engine process stopped while this answer was under way",
                    )
                )
            self._on_disconnect()

    async def _keep_registered(self) -> None:
        """The engine pushes its table every second to the front ends it knows; one that gets
        none (an engine started anew, a lost hello) says hello again."""
        while True:
            await asyncio.sleep(1.0)
            if self.connected and time.monotonic() - self._last_table > 2.5:
                self.notify(["hello"])
