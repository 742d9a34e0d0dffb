"""Channels to one or more servers, call options, and the retry policy."""

from __future__ import annotations

import functools
import itertools
import random
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import grpc

from . import _calls
from .errors import RETRYABLE

MIB = 1024 * 1024


@dataclass(frozen=True)
class ConnectionOptions:
    targets: tuple[str, ...]
    timeout: float | None
    retries: int
    credentials: grpc.ChannelCredentials | None
    token: str | None
    max_message_mb: int

    @classmethod
    def build(
        cls,
        target: str | Sequence[str],
        timeout: float | None,
        retries: int,
        tls: bool,
        root_certificates: bytes | None,
        credentials: grpc.ChannelCredentials | None,
        token: str | None,
        max_message_mb: int,
        client_certificate: bytes | None = None,
        client_key: bytes | None = None,
    ) -> ConnectionOptions:
        targets = (target,) if isinstance(target, str) else tuple(target)
        if not targets:
            raise ValueError("give at least one target, e.g. 'localhost:8001'")
        if (client_certificate is None) != (client_key is None):
            raise ValueError("client_certificate and client_key go together (mutual TLS)")
        if credentials is None and (tls or root_certificates or client_certificate):
            credentials = grpc.ssl_channel_credentials(
                root_certificates=root_certificates,
                private_key=client_key,
                certificate_chain=client_certificate,
            )
        return cls(targets, timeout, max(retries, 0), credentials, token, max_message_mb)

    @property
    def channel_options(self) -> list[tuple[str, int]]:
        limit = self.max_message_mb * MIB
        return [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()


@functools.cache
def _propagator() -> Any:
    """opentelemetry.propagate when the application has OpenTelemetry, else None."""
    try:
        from opentelemetry import propagate
    except ImportError:
        return None
    return propagate


class RoundRobin:
    """Which target each attempt of a call goes to: calls start on successive targets, and a
    retry moves on to the next one, so one target down costs one failed attempt."""

    def __init__(self, count: int) -> None:
        self._count = count
        self._next = itertools.count()

    def attempts(self, retries: int, key: str | None = None) -> Iterator[int]:
        """`key`: a sequence's id; its calls all start on the one target it hashes to, the
        server that holds the sequence's state."""
        start = zlib.crc32(key.encode()) if key is not None else next(self._next)
        for attempt in range(retries + 1):
            yield (start + attempt) % self._count


def backoff_seconds(attempt: int, base: float = 0.05, cap: float = 2.0) -> float:
    """Exponential backoff with full jitter before retry number `attempt` (0-based)."""
    return random.uniform(0, min(cap, base * 2**attempt))


def retry_delay(code: grpc.StatusCode, attempt: int, retries: int, targets: int) -> float | None:
    """Seconds to wait before the next attempt, or None when the call should give up."""
    if code not in RETRYABLE or attempt >= retries:
        return None
    # Another target may answer at once; the same one (or a full queue) needs a moment.
    if targets == 1 or code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return backoff_seconds(attempt)
    return 0.0


class Connections:
    """What Client and AsyncClient share: the options, a channel and stubs per target, and
    which target each attempt goes to. Subclasses name their grpc channel constructors."""

    _secure_channel: ClassVar[Callable[..., Any]]
    _insecure_channel: ClassVar[Callable[..., Any]]

    def __init__(
        self,
        target: str | Sequence[str] = "localhost:8001",
        *,
        timeout: float | None = 30.0,
        retries: int = 3,
        tls: bool = False,
        root_certificates: bytes | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
        max_message_mb: int = 64,
        client_certificate: bytes | None = None,
        client_key: bytes | None = None,
    ) -> None:
        self._options = ConnectionOptions.build(
            target,
            timeout,
            retries,
            tls,
            root_certificates,
            credentials,
            token,
            max_message_mb,
            client_certificate,
            client_key,
        )
        self._channels = [self._open(t) for t in self._options.targets]
        self._stubs = [_calls.stubs(channel) for channel in self._channels]
        self._rotation = RoundRobin(len(self._channels))

    def _open(self, target: str) -> Any:
        options = self._options.channel_options
        if self._options.credentials is not None:
            return self._secure_channel(target, self._options.credentials, options=options)
        return self._insecure_channel(target, options=options)

    def _attempts(self, call: _calls.Call) -> Iterator[tuple[int, Callable[..., Any]]]:
        """(attempt number, the bound RPC on that attempt's target) for each allowed try."""
        key = dict(call.metadata).get(_calls.SEQUENCE_HEADER)
        for attempt, index in enumerate(self._rotation.attempts(self._options.retries, key)):
            yield attempt, getattr(self._stubs[index][call.service], call.method)

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        """The call's metadata: the bearer token, and the W3C trace context when the
        application traces with OpenTelemetry, so the server's spans join its trace."""
        propagate = _propagator()
        if propagate is None:
            return self._options.metadata
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        return self._options.metadata + tuple(carrier.items())

    def _delay(self, error: grpc.RpcError, attempt: int) -> float | None:
        return retry_delay(error.code(), attempt, self._options.retries, len(self._stubs))
