"""A ZeroMQ socket driven by the event loop with as little per-message work as Python allows:
one wake-up reads every message waiting (under load, many), sends go out at once without a
future each. zmq.asyncio costs several times more CPU per message, which the engine, one
process for all front ends, cannot spare.

ZeroMQ's file descriptor is edge-triggered: a send may take in messages without the descriptor
firing again, so every send also schedules one more look (once per loop iteration)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import zmq

# Plain ints: pyzmq's flag enums cost more than the call they go with.
NOBLOCK = int(zmq.NOBLOCK)
NOBLOCK_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)


class Pump:
    def __init__(self, socket: zmq.Socket, on_message: Callable[[list[zmq.Frame]], None]) -> None:
        self.socket = socket
        self._on_message = on_message
        self._loop = asyncio.get_running_loop()
        self._look_scheduled = False
        self._loop.add_reader(socket.FD, self._drain)
        self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._look_scheduled = False
        receive = self.socket.recv
        while True:
            try:
                frame = receive(NOBLOCK, copy=False)
            except zmq.Again:
                return
            frames = [frame]
            while frame.more:  # the rest of a message is there once its first part is
                frame = receive(NOBLOCK, copy=False)
                frames.append(frame)
            self._on_message(frames)

    def send(self, frames: Sequence[Any], copy: bool = True) -> None:
        """Raises zmq.Again when the message cannot be queued (no peer, with IMMEDIATE)."""
        send = self.socket.send
        last = len(frames) - 1
        for i, frame in enumerate(frames):
            send(frame, NOBLOCK if i == last else NOBLOCK_MORE, copy=copy)
        if not self._look_scheduled:
            self._look_scheduled = True
            self._loop.call_soon(self._drain)

    def close(self) -> None:
        self._loop.remove_reader(self.socket.FD)
        self.socket.close(linger=0)
