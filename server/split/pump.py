"""A ZeroMQ socket driven by the event loop with as little per-message work as Python allows:
one wake-up reads every message waiting, and the messages posted for one peer during one turn
of the loop leave as one ZeroMQ message (a bundle: a marker frame, the parts' frame counts, then
their frames). A batch of 8 answers for one front end is one send and one receive, not 8;
zmq.asyncio costs several times more CPU per message, which the engine cannot spare.

ZeroMQ's file descriptor is edge-triggered: a send may take in messages without the descriptor
firing again, so every flush also looks for messages."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import msgpack
import zmq

# Plain ints: pyzmq's flag enums cost more than the call they go with.
NOBLOCK = int(zmq.NOBLOCK)
NOBLOCK_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)
BUNDLE = b"\x00"  # a msgpack header (always an array) never is this one byte

Undelivered = Callable[[bytes, list[Sequence[Any]], zmq.ZMQError], None]
"""(peer identity, the messages, why): a ROUTER's peer is gone, a DEALER has no peer."""


def unbundle(frames: list[Any], start: int = 0) -> list[list[Any]]:
    """The messages in what one receive returned: itself, or the parts of a bundle, each with
    the frames before `start` (a ROUTER's peer identity) in front."""
    marker = frames[start] if len(frames) > start else None
    if marker is None or len(marker) != 1 or marker.bytes != BUNDLE:
        return [frames]
    prefix, position, messages = frames[:start], start + 2, []
    for count in msgpack.unpackb(frames[start + 1].buffer):
        messages.append(prefix + frames[position : position + count])
        position += count
    return messages


class Pump:
    def __init__(
        self,
        socket: zmq.Socket,
        on_message: Callable[[list[Any]], None],
        on_undelivered: Undelivered | None = None,
    ) -> None:
        self.socket = socket
        self._on_message = on_message
        self._on_undelivered = on_undelivered
        self._routed = socket.type == zmq.ROUTER  # its messages start with the peer's identity
        self._outbox: dict[bytes, list[Sequence[Any]]] = {}
        self._flush_scheduled = False
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(socket.FD, self._drain)
        self._loop.call_soon(self._drain)

    # ---- receiving -----------------------------------------------------------------------------

    def _drain(self) -> None:
        if self.socket.closed:  # a flush queued before close() runs after it
            return
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
            self._deliver(frames)

    def _deliver(self, frames: list[Any]) -> None:
        for message in unbundle(frames, 1 if self._routed else 0):
            self._on_message(message)

    # ---- sending -------------------------------------------------------------------------------

    def post(self, frames: Sequence[Any]) -> None:
        """Queue a message (a ROUTER's starts with the peer's identity); it leaves at the end
        of this turn of the loop, with the others for the same peer."""
        if self._routed:
            peer, parts = frames[0], frames[1:]
        else:
            peer, parts = b"", frames
        self._outbox.setdefault(peer, []).append(parts)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        outbox, self._outbox = self._outbox, {}
        if self.socket.closed:
            return  # closed: what was still posted has no one to go to
        for peer, messages in outbox.items():
            frames: list[Any] = [peer] if self._routed else []
            if len(messages) == 1:
                frames.extend(messages[0])
            else:
                frames += [BUNDLE, msgpack.packb([len(m) for m in messages])]
                frames += [frame for message in messages for frame in message]
            try:
                self._send_now(frames)
            except zmq.ZMQError as exc:
                if self._on_undelivered is None:
                    raise
                self._on_undelivered(peer, messages, exc)
        self._drain()

    def _send_now(self, frames: list[Any]) -> None:
        send = self.socket.send
        last = len(frames) - 1
        for i, frame in enumerate(frames):  # below pyzmq's copy threshold a frame is copied
            send(frame, NOBLOCK if i == last else NOBLOCK_MORE, copy=False)

    def close(self) -> None:
        self._flush()
        self._loop.remove_reader(self.socket.FD)
        self.socket.close(linger=0)
