"""The HTTP connection, bounded before any request reaches the app: how many connections may be
open, how large a request's head (request line and headers) may grow, and how long a client may
take to send it. uvicorn's httptools protocol bounds none of these: a header of 128 MiB was
read whole, and a connection that sent half a header was held forever."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large", 503: b"Busy"}


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int
    max_head_bytes: int
    head_timeout_s: float


def bounded_protocol(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with `limits` (a class, as uvicorn's `http` option takes)."""

    class BoundedProtocol(HttpToolsProtocol):
        _limits = limits

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._in_head = True
            self._head_bytes = 0
            self._head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > self._limits.max_connections:
                self._refuse(503, f"more than {self._limits.max_connections} open connections")
                return
            self._start_head_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_head_timer()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._in_head:
                # Counted before parsing: a head that ends in this block counts to its end
                # (what follows is the body), one that does not counts whole.
                end = data.find(b"\r\n\r\n")
                self._head_bytes += len(data) if end < 0 else end + 4
                if self._head_bytes > self._limits.max_head_bytes:
                    self._refuse_head()
                    return
            super().data_received(data)
            if self._in_head and self._head_bytes > self._limits.max_head_bytes:
                self._refuse_head()  # a pipelined request's head, begun inside that block

        def _refuse_head(self) -> None:
            self._refuse(
                431,
                f"the request line and headers are larger than this server's limit of "
                f"{self._limits.max_head_bytes} bytes (http_max_header_kb)",
            )

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_head, self._head_bytes = True, 0
            self._start_head_timer()

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._stop_head_timer()
            super().on_headers_complete()

        def _start_head_timer(self) -> None:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(
                    self._limits.head_timeout_s, self._head_timed_out
                )

        def _stop_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self._in_head and not self.transport.is_closing():
                self._refuse(
                    408,
                    f"the request line and headers did not arrive within "
                    f"{self._limits.head_timeout_s:g} s (http_header_timeout_s)",
                )

        def _refuse(self, status: int, message: str) -> None:
            self._stop_head_timer()
            if self.transport.is_closing():
                return
            body = message.encode()
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                % (status, _REASONS[status], len(body), body)
            )
            self.transport.close()

    return BoundedProtocol
