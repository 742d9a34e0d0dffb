"""What the rest of the server needs of the models, whoever runs them: this process's
ModelManager, or a split server's engine seen from a front end. The core and the edges are
written against this, so neither knows which one it has."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Protocol

from ..protocol.types import IndexEntry, VersionStatistics
from .model import ModelVersion

if TYPE_CHECKING:  # the core holds the regions; this only names them
    from ..core.shared_memory import RegionRegistry, SharedMemory


class ModelCatalog(Protocol):
    @property
    def server_ready(self) -> bool:
        """Every wanted model loaded (or one, without strict readiness)."""
        ...

    def get(self, name: str, version: str = "") -> ModelVersion:
        """The version a request names (the newest when `version` is empty); NOT_FOUND or
        UNAVAILABLE errors otherwise."""
        ...

    def is_ready(self, name: str, version: str = "") -> bool: ...

    def versions_of(self, name: str) -> list[ModelVersion]: ...

    def index(self, ready_only: bool = False) -> list[IndexEntry]:
        """The index as this process knows it now (health services, Vision's model list)."""
        ...

    async def repository_index(self, ready_only: bool = False) -> list[IndexEntry]:
        """The RepositoryIndex call: what the repository holds at this moment."""
        ...

    async def statistics(self, name: str, version: str) -> list[VersionStatistics]:
        """One entry per version (every served version when `name` is empty)."""
        ...

    async def control_load(self, name: str, config_json: str | None = None) -> None: ...

    async def control_unload(self, name: str) -> None: ...


class ModelHost(Protocol):
    """Where the models run, as the serving process starts and stops it: in this process, or
    in a split server's engine. One factory (split.hosts.model_host) chooses."""

    @property
    def catalog(self) -> ModelCatalog: ...

    async def open(self) -> None:
        """Before the server listens."""
        ...

    def start_background(self) -> None:
        """Once it listens: loading, the repository watch, the metrics endpoint."""
        ...

    def http_sockets(self, host: str, port: int) -> list[socket.socket] | None:
        """Sockets the HTTP server accepts on (None: it binds its own)."""
        ...

    def stop_background(self) -> None:
        """At the drain's start: no more loading or watching."""
        ...

    def regions(self, memory: SharedMemory) -> RegionRegistry:
        """Where shared memory regions are registered (`memory` maps them here)."""
        ...

    def close(self) -> None: ...
