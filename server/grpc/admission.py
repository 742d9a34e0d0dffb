"""How many request bytes the gRPC port holds at once. gRPC decompresses a message before the
handler sees it, up to the message limit: 62 KB of gzip on the wire became 63 MiB here, and
48 such calls at once took 1.9 GB. The limit per message stays (max_message_mb); this bounds
what all calls, and the calls of one connection, hold together: past it a call is refused at
once (RESOURCE_EXHAUSTED, safe to retry) and its message freed."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator

from ..protocol.errors import ServerBusy

MIB = 1 << 20


class RequestBytes:
    def __init__(self, total_limit: int, connection_limit: int) -> None:
        self._total_limit = total_limit
        self._connection_limit = connection_limit
        self._total = 0
        self._by_connection: defaultdict[str, int] = defaultdict(int)

    @property
    def held(self) -> int:
        return self._total

    @contextlib.contextmanager
    def hold(self, connection: str, size: int) -> Iterator[None]:
        """Count `size` bytes against both budgets while the call runs. A call alone is always
        admitted (its size is bounded by the message limit)."""
        mine = self._by_connection[connection]
        if mine and mine + size > self._connection_limit:
            raise ServerBusy(
                f"this connection's calls in flight hold {mine // MIB} MiB; with this request's "
                f"{size // MIB} MiB that is past this server's limit of "
                f"{self._connection_limit // MIB} MiB a connection (max_inflight_mb_per_connection)"
            )
        if self._total and self._total + size > self._total_limit:
            raise ServerBusy(
                f"calls in flight hold {self._total // MIB} MiB; with this request's "
                f"{size // MIB} MiB that is past this server's limit of "
                f"{self._total_limit // MIB} MiB (max_inflight_mb); try again shortly"
            )
        self._total += size
        self._by_connection[connection] = mine + size
        try:
            yield
        finally:
            self._total -= size
            left = self._by_connection[connection] - size
            if left:
                self._by_connection[connection] = left
            else:
                del self._by_connection[connection]
