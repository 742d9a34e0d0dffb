"""The front end's view of the engine's models: a ModelManager whose table is the one the engine
pushes, whose versions carry everything the data plane and the Vision API check and decode
against (config, tensors, labels, task), and whose schedulers send the work to the engine."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as pb

from .. import histograms
from ..errors import ModelNotFound, ModelUnavailable
from ..histograms import VersionHistograms
from ..manager import IndexEntry, ModelEntry, ModelManager, State
from ..model import ModelVersion, assemble_version
from ..scheduler import JobResult
from ..settings import ServerSettings
from ..stats import ModelStats, RequestTiming
from . import wire
from .engine_client import ENGINE_GONE, EngineClient

CALL_COUNTS_INTERVAL_S = 0.05


class RemoteScheduler:
    """Submits a job to the engine's scheduler of the same model version."""

    def __init__(
        self, client: EngineClient, name: str, version: int, pinned: bool, stats: RemoteStats
    ) -> None:
        self._client = client
        self._stats = stats
        self._name = name
        self._version = version
        self._pinned = pinned
        self.batching = True

    async def submit(
        self,
        feeds: dict[str, np.ndarray],
        items: int,
        output_names: Sequence[str],
        priority: int = 0,
        timeout_us: int = 0,
        deadline_s: float | None = None,
    ) -> JobResult:
        descriptors, frames = wire.describe(feeds)
        header = [
            "submit", self._name, self._version, self._pinned, items, list(output_names),
            priority, timeout_us, deadline_s, descriptors,
        ]  # fmt: skip
        body, received = await self._client.call(header, frames)
        queue_ns, input_ns, infer_ns, output_ns, batch_items, outputs, *counts = body
        self._stats.engine_counts = counts
        return JobResult(
            wire.arrays(outputs, received), queue_ns, input_ns, infer_ns, output_ns, batch_items
        )

    def retire(self) -> None:
        pass


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

    def to_proto(self, name: str, version: str) -> pb.ModelStatistics:
        stats = ModelStats().to_proto(name, version)
        stats.inference_count, stats.execution_count = self.engine_counts
        return stats

    def record_success(self, total_ns: int, timing: RequestTiming) -> None:
        super().record_success(total_ns, timing)
        self._histograms.observe_request(total_ns, timing.queue_ns, timing.batch_items)
        self._hold()

    def record_failure(self, total_ns: int) -> None:
        super().record_failure(total_ns)
        self._hold()

    def _hold(self) -> None:
        if not self._held:
            self._held = True
            self._client.hold(self)

    def take(self) -> list[Any]:
        """What was recorded since the last take, for the engine; then start again."""
        record = [*self._key, self.request_totals(), self._histograms.request_counts()]
        for duration in self._request_durations():
            duration.count = duration.ns = 0
        self._histograms = VersionHistograms(self._histograms.labels)
        self._held = False
        return record


class EngineHistograms:
    """The engine observes the histograms (from the statistics sent to it)."""

    def observe_request(self, total_ns: int, queue_ns: int, batch_items: int) -> None:
        pass

    def observe_batch(self, compute_ns: int) -> None:
        pass

    def remove(self) -> None:
        pass


class RemoteManager(ModelManager):
    def __init__(
        self,
        settings: ServerSettings,
        executor: Executor,
        on_change: Callable[[], None] = lambda: None,
        *,
        address: str,
        identity: str = "",
    ) -> None:
        super().__init__(settings, executor, on_change)
        self.owns_models = False
        self.client = EngineClient(
            address,
            identity or f"frontend-{os.getpid()}",
            self._take_table,
            self._engine_gone,
            self._flush_call_counts,
        )
        self._table: dict[str, Any] = {}
        self._versions: dict[tuple[str, int, bytes], ModelVersion] = {}
        self._newest: dict[str, ModelVersion] = {}
        """Per model, its newest version sent unpinned: the engine answers with its newest,
        which a swap may have changed since this front end's table was pushed."""
        self._first_table = asyncio.Event()
        self._sent: dict[tuple[str, str, str], int] = {}
        self._flush_due: asyncio.TimerHandle | None = None
        self._last_flush = 0.0

    # ---- the engine's table ------------------------------------------------------------------

    def _take_table(self, table: dict[str, Any]) -> None:
        self._first_table.set()
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
                scheduler=RemoteScheduler(
                    self.client,
                    name,
                    newest.version,
                    False,
                    newest.stats,  # type: ignore[arg-type]
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
        return assemble_version(
            config,
            number,
            labels,
            RemoteScheduler(self.client, name, number, True, stats),  # type: ignore[arg-type]
            stats,
            providers,
            EngineHistograms(),  # type: ignore[arg-type]
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
            if name and name in self._table["names"]:
                return ModelEntry(name=name)
            raise ModelNotFound(f"unknown model '{name}': it is not in the model repository")
        return entry

    def get(self, name: str, version: str = "") -> ModelVersion:
        found = super().get(name, version)
        return found if version else self._newest.get(name, found)

    @property
    def server_ready(self) -> bool:
        return self.client.connected and bool(self._table.get("ready"))

    def index(self, ready_only: bool = False) -> list[IndexEntry]:
        rows = [IndexEntry(*row) for row in self._table.get("index", [])]
        if ready_only:
            rows = [r for r in rows if r.state == State.READY.value and r.version]
        return rows

    # ---- changes go to the engine ------------------------------------------------------------

    async def load_all(self, names: tuple[str, ...] = ()) -> None:
        """Connect to the engine; it loads the models and pushes its table."""
        self.client.start()
        histograms.call_listener = self._counted
        await self._first_table.wait()
        self.startup_done = True

    async def control_load(self, name: str, config_json: str | None = None) -> None:
        await self.client.call(["load", name, config_json])

    async def control_unload(self, name: str) -> None:
        await self.client.call(["unload", name])

    async def repository_index(self, ready_only: bool = False) -> list[IndexEntry]:
        body, _ = await self.client.call(["index", ready_only])
        return [IndexEntry(*row) for row in body]

    async def statistics(self, name: str, version: str) -> list[pb.ModelStatistics]:
        body, _ = await self.client.call(["statistics", name, version])
        return [pb.ModelStatistics.FromString(message) for message in body]

    def _counted(self) -> None:
        """A call was counted: send the counts soon, at most every CALL_COUNTS_INTERVAL_S (a
        quiet server's scrape sees its last call; a busy one sends a message now and then)."""
        if self._flush_due is not None:
            return
        wait = max(self._last_flush + CALL_COUNTS_INTERVAL_S - time.monotonic(), 0.0)
        self._flush_due = asyncio.get_running_loop().call_later(wait, self._flush_call_counts)

    def _flush_call_counts(self) -> None:
        """The calls this front end counted since the last time, for the engine's /metrics."""
        self._flush_due, self._last_flush = None, time.monotonic()
        now = histograms.call_counts()
        rows = [[*key, count - self._sent.get(key, 0)] for key, count in now.items()]
        rows = [row for row in rows if row[3]]
        if rows and self.client.connected:
            self.client.notify(["calls", rows])
            self._sent = now

    def close(self) -> None:
        histograms.call_listener = None
        if self._flush_due is not None:
            self._flush_due.cancel()
        self._flush_call_counts()
        self.client.close()
