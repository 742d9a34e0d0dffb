"""Channels to one or more servers, call options, and the retry policy."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import grpc

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
    ) -> ConnectionOptions:
        targets = (target,) if isinstance(target, str) else tuple(target)
        if not targets:
            raise ValueError("give at least one target, e.g. 'localhost:8001'")
        if credentials is None and (tls or root_certificates):
            credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
        return cls(targets, timeout, max(retries, 0), credentials, token, max_message_mb)

    @property
    def channel_options(self) -> list[tuple[str, int]]:
        limit = self.max_message_mb * MIB
        return [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()


class RoundRobin:
    """Which target each attempt of a call goes to: calls start on successive targets, and a
    retry moves on to the next one, so one target down costs one failed attempt."""

    def __init__(self, count: int) -> None:
        self._count = count
        self._next = itertools.count()

    def attempts(self, retries: int) -> Iterator[int]:
        start = next(self._next)
        for attempt in range(retries + 1):
            yield (start + attempt) % self._count


def backoff_seconds(attempt: int, base: float = 0.05, cap: float = 2.0) -> float:
    """Exponential backoff with full jitter before retry number `attempt` (0-based)."""
    return random.uniform(0, min(cap, base * 2**attempt))
