"""The one place that chooses where the models run: `model_host` gives this process's models
(LocalModels) or, in a split server's front end, the engine's (EngineModels). vLLM's in-process
and multiprocess engine clients are the shape."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

from ..core.shared_memory import LocalRegions, RegionRegistry, SharedMemory
from ..models.catalog import ModelCatalog, ModelHost
from ..models.manager import ModelManager
from ..models.watch import watch_repository
from ..observability.metrics import serve_metrics
from ..runtime import gpu_options
from ..settings import ServerSettings
from .remote_models import EngineModels


@dataclass(frozen=True)
class EngineLink:
    """How a front end reaches its engine."""

    address: str
    identity: str


class LocalModels:
    """The models run in this process: live at once, ready once loaded and warmed up."""

    def __init__(
        self, settings: ServerSettings, executor: Executor, on_change: Callable[[], None]
    ) -> None:
        self.settings = settings
        self.manager = ModelManager(settings, executor, on_change)
        self._loading: asyncio.Task[None] | None = None
        self._watching: asyncio.Task[None] | None = None

    @property
    def catalog(self) -> ModelCatalog:
        return self.manager

    async def open(self) -> None:
        pass

    def start_background(self) -> None:
        settings = self.settings
        gpu_options.log_runtime(settings.device)
        serve_metrics(self.manager, settings.metrics_host or settings.host, settings.metrics_port)
        self._loading = asyncio.create_task(self.manager.load_all(settings.models))
        if settings.model_control_mode == "poll":
            self._watching = asyncio.create_task(
                watch_repository(self.manager, settings.repository_poll_seconds, self._loading)
            )

    def http_sockets(self, host: str, port: int) -> list[socket.socket] | None:
        return None

    def regions(self, memory: SharedMemory) -> RegionRegistry:
        return LocalRegions(memory)

    def stop_background(self) -> None:
        for task in (self._loading, self._watching):
            if task is not None:
                task.cancel()

    def close(self) -> None:
        pass


def model_host(
    settings: ServerSettings,
    executor: Executor,
    on_change: Callable[[], None],
    engine: EngineLink | None = None,
) -> ModelHost:
    if engine is None:
        return LocalModels(settings, executor, on_change)
    return EngineModels(settings, on_change, engine.address, engine.identity)
