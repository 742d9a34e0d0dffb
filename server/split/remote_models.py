"""The front end's view of the engine's models: a model catalog whose table is the one the engine
pushes, whose versions carry everything the data plane and the Vision API check and decode
against (config, tensors, labels, task), and whose schedulers send the work to the engine."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import Callable
from typing import Any

from tritonclient.grpc import model_config_pb2 as mc

from ..batching.stats import ModelStats, RequestTiming
from ..core.shared_memory import RegionRegistry, RegionStatus, SharedMemory
from ..models.catalog import ModelCatalog
from ..models.manager import ModelEntry, State, find_version, not_in_repository, serves
from ..models.model import ModelVersion, assemble_version
from ..observability import histograms
from ..observability.histograms import VersionHistograms
from ..protocol.errors import ModelUnavailable
from ..protocol.generator_config import is_generator
from ..protocol.types import IndexEntry, VersionStatistics
from ..settings import ServerSettings
from . import wire
from .engine_client import ENGINE_GONE, EngineClient
from .remote_generator import RemoteGenerator
from .remote_scheduler import RemoteScheduler
from .shared_port import shared_port


class RemoteStats(ModelStats):
    """A version's per-request statistics since they were last sent to the engine, whose
    statistics and histograms are the server's: sums, not one record a request, so the engine's
    work is per message."""

    def __init__(self, client: EngineClient, name: str, version: int) -> None:
        super().__init__()
        self._client = client
        self._key = [name, version]
        self._histograms = VersionHistograms((name, str(version)))  # not registered: a delta
        self._held = False
        self.engine_counts = [0, 0]
        """The engine's inference and execution counts, as of this front end's last answer."""

    def average_batch(self) -> float:
        inferences, executions = self.engine_counts
        return inferences / executions if executions else 0.0

    def view(self, name: str, version: str) -> VersionStatistics:
        inference_count, execution_count = self.engine_counts
        return dataclasses.replace(
            ModelStats().view(name, version),
            inference_count=inference_count,
            execution_count=execution_count,
        )

    def record_success(self, total_ns: int, timing: RequestTiming) -> None:
        super().record_success(total_ns, timing)
        self._histograms.observe_request(total_ns, timing.queue_ns, timing.batch_items)
        self._hold()

    def record_failure(self, total_ns: int) -> None:
        super().record_failure(total_ns)
        self._hold()

    def record_cache_hit(self, total_ns: int, lookup_ns: int) -> None:
        super().record_cache_hit(total_ns, lookup_ns)
        self._hold()

    def record_cache_miss(self, ns: int) -> None:
        super().record_cache_miss(ns)
        self._hold()

    def _hold(self) -> None:
        if not self._held:
            self._held = True
            self._client.hold(self)

    def take(self) -> list[Any]:
        """What was recorded since the last take, for the engine; then start again."""
        record = ["stats", *self._key, self.request_totals(), self._histograms.request_counts()]
        for duration in self._request_durations():
            duration.count = duration.ns = 0
        self._histograms = VersionHistograms(self._histograms.labels)
        self._held = False
        return record


def _remote(version: ModelVersion) -> RemoteStats:
    """A front end's versions are assembled with RemoteStats (EngineModels._assemble)."""
    stats = version.stats
    assert isinstance(stats, RemoteStats)
    return stats


class CallCounts:
    """This front end's calls by RPC, model and outcome (deepserve_requests_total) since they
    were last sent: held and sent like the statistics."""

    def __init__(self, client: EngineClient) -> None:
        self._client = client
        self._sent: dict[tuple[str, str, str], int] = {}
        self._held = False

    def counted(self) -> None:
        if not self._held:
            self._held = True
            self._client.hold(self)

    def take(self) -> list[Any]:
        now = histograms.call_counts()
        rows = [
            [*key, n - self._sent.get(key, 0)] for key, n in now.items() if n != self._sent.get(key)
        ]
        self._sent, self._held = now, False
        return ["calls", rows]


class EngineRegions:
    """Shared memory registrations made at the engine; this front end maps what it lists."""

    def __init__(self, client: EngineClient, memory: SharedMemory) -> None:
        self._client = client
        self._memory = memory

    async def register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        body, _ = await self._client.call(["shm_register", name, key, offset, byte_size])
        self.take(body)

    async def unregister(self, name: str = "") -> None:
        body, _ = await self._client.call(["shm_unregister", name])
        self.take(body)

    def status(self, name: str = "") -> list[RegionStatus]:
        return self._memory.status(name)

    def take(self, rows: list[list[Any]]) -> None:
        self._memory.mirror([RegionStatus(*row) for row in rows])


class EngineHistograms:
    """The engine observes the histograms (from the statistics sent to it)."""

    def observe_request(self, total_ns: int, queue_ns: int, batch_items: int) -> None:
        pass

    def observe_batch(self, compute_ns: int) -> None:
        pass

    def remove(self) -> None:
        pass


class EngineModels:
    """The models of a split server's engine, seen from a front end: a ModelCatalog answered
    from the table the engine pushes, with changes and queries of the moment sent to it."""

    def __init__(
        self, settings: ServerSettings, on_change: Callable[[], None], address: str, identity: str
    ) -> None:
        self.settings = settings
        self._on_change = on_change
        self.client = EngineClient(address, identity, self._take_table, self._engine_gone)
        self._call_counts = CallCounts(self.client)
        self._table: dict[str, Any] = {}
        self._entries: dict[str, ModelEntry] = {}
        self._versions: dict[tuple[str, int, bytes], ModelVersion] = {}
        self._newest: dict[str, ModelVersion] = {}
        """Per model, its newest version sent unpinned: the engine answers with its newest,
        which a swap may have changed since this front end's table was pushed."""
        self._first_table = asyncio.Event()
        self._regions: EngineRegions | None = None

    # ---- the engine's table ------------------------------------------------------------------

    def regions(self, memory: SharedMemory) -> RegionRegistry:
        """Registrations go through the engine, which every front end mirrors."""
        self._regions = EngineRegions(self.client, memory)
        return self._regions

    def _take_table(self, table: dict[str, Any]) -> None:
        self._first_table.set()
        table = dict(table)
        regions = table.pop("regions", [])
        if self._regions is not None:
            self._regions.take(regions)
        if table == self._table:
            return  # the heartbeat: nothing changed
        self._table = table
        entries: dict[str, ModelEntry] = {}
        kept: dict[tuple[str, int, bytes], ModelVersion] = {}
        for name, state, reason, versions in table["entries"]:
            entry = entries[name] = ModelEntry(name, State(state), reason)
            for number, config_bytes, labels, providers in versions:
                key = (name, number, config_bytes)
                version = self._versions.get(key) or self._assemble(key, labels, providers)
                kept[key] = entry.versions[number] = version
        self._entries, self._versions = entries, kept
        self._newest = {
            name: dataclasses.replace(
                newest,
                scheduler=RemoteGenerator(self.client, name, newest.version, False, newest.config)
                if is_generator(newest.config)
                else RemoteScheduler(
                    self.client,
                    name,
                    newest.version,
                    False,
                    _remote(newest),
                    newest.config,
                    self.settings.max_queue_wait_ms,
                ),
            )
            for name, entry in entries.items()
            if entry.versions
            for newest in [entry.versions[max(entry.versions)]]
        }
        self._on_change()

    def _assemble(
        self, key: tuple[str, int, bytes], labels: dict[str, list[str]], providers: list[str]
    ) -> ModelVersion:
        name, number, config_bytes = key
        config = mc.ModelConfig.FromString(config_bytes)
        stats = RemoteStats(self.client, name, number)
        scheduler: RemoteScheduler | RemoteGenerator = (
            RemoteGenerator(self.client, name, number, True, config)
            if is_generator(config)
            else RemoteScheduler(
                self.client, name, number, True, stats, config, self.settings.max_queue_wait_ms
            )
        )
        return assemble_version(
            config,
            number,
            labels,
            scheduler,
            stats,
            providers,
            EngineHistograms(),
        )

    def _engine_gone(self) -> None:
        self._table = {}
        self._entries = {}
        self._on_change()

    # ---- queries, answered from the table ------------------------------------------------------

    def _entry(self, name: str) -> ModelEntry:
        if not self.client.connected or not self._table:
            raise ModelUnavailable(ENGINE_GONE)
        entry = self._entries.get(name)
        if entry is None:
            if not name or name not in self._table["names"]:
                raise not_in_repository(name)
            entry = self._entries[name] = ModelEntry(name=name)
        return entry

    def get(self, name: str, version: str = "") -> ModelVersion:
        found = find_version(self._entry(name), version)
        return found if version else self._newest.get(name, found)

    def is_ready(self, name: str, version: str = "") -> bool:
        """Served and READY (an ensemble whose step is down serves, but is not ready)."""
        return serves(self.get, name, version) and self._entry(name).state is State.READY

    def versions_of(self, name: str) -> list[ModelVersion]:
        return list(self._entry(name).versions.values())

    @property
    def server_ready(self) -> bool:
        return self.client.connected and bool(self._table.get("ready"))

    def index(self, ready_only: bool = False) -> list[IndexEntry]:
        rows = [IndexEntry(*row) for row in self._table.get("index", [])]
        if ready_only:
            rows = [r for r in rows if r.state == State.READY.value and r.version]
        return rows

    # ---- what the engine answers at the moment asked -------------------------------------------

    async def repository_index(self, ready_only: bool = False) -> list[IndexEntry]:
        body, _ = await self.client.call(["index", ready_only])
        return [IndexEntry(*row) for row in body]

    async def statistics(self, name: str, version: str) -> list[VersionStatistics]:
        body, _ = await self.client.call(["statistics", name, version])
        return [wire.statistics_from(fields) for fields in body]

    async def control_load(self, name: str, config_json: str | None = None) -> None:
        await self.client.call(["load", name, config_json])

    async def control_unload(self, name: str) -> None:
        await self.client.call(["unload", name])

    # ---- as a ModelHost ----------------------------------------------------------------------

    @property
    def catalog(self) -> ModelCatalog:
        return self

    async def open(self) -> None:
        """Connect to the engine; it loads the models and pushes its table, which this front
        end has before it listens (a connection the kernel gives it is then served)."""
        self.client.start()
        histograms.listen_to_calls(self._call_counts.counted)
        await self._first_table.wait()

    def start_background(self) -> None:
        """The engine loads, watches and serves the metrics."""

    def http_sockets(self, host: str, port: int) -> list[socket.socket] | None:
        """The front ends share the HTTP port, as their gRPC servers do."""
        return [shared_port(host, port)]

    def stop_background(self) -> None:
        pass

    def close(self) -> None:
        histograms.listen_to_calls(None)
        self.client.close()  # its goodbye carries what is held
