"""Model versions without a model: a scheduler that computes a known function of its input,
so the core's own checks and bookkeeping are tested in process."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from deepserve.server.batching.scheduler import JobResult
from deepserve.server.batching.stats import ModelStats
from deepserve.server.models.manager import ModelEntry, State, find_version, serves
from deepserve.server.models.model import ModelVersion, assemble_version
from deepserve.server.protocol.errors import ModelNotFound
from deepserve.server.protocol.types import IndexEntry, VersionStatistics


class FunctionScheduler:
    """Answers each job with `function(feeds)` at once and keeps what it was asked."""

    batching = True

    def __init__(self, function: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]):
        self.function = function
        self.jobs: list[tuple[int, list[str], int, int]] = []
        self.failure: Exception | None = None

    async def submit(
        self,
        feeds: dict[str, np.ndarray],
        items: int,
        output_names: Sequence[str],
        priority: int = 0,
        timeout_us: int = 0,
        deadline_s: float | None = None,
        sequence: object = None,
    ) -> JobResult:
        self.jobs.append((items, list(output_names), priority, timeout_us))
        if self.failure is not None:
            raise self.failure
        return JobResult(self.function(feeds), 1_000, 2_000, 3_000, 4_000, items)

    @contextlib.contextmanager
    def reserve(self, items: int, deadline_s: float | None = None) -> Iterator[None]:
        yield

    def retire(self) -> None:
        pass


class CountingHistograms:
    def __init__(self) -> None:
        self.requests = 0

    def observe_request(self, total_ns: int, queue_ns: int, batch_items: int) -> None:
        self.requests += 1

    def remove(self) -> None:
        pass


def version(
    config: mc.ModelConfig,
    scheduler: FunctionScheduler,
    labels: dict[str, list[str]] | None = None,
    number: int = 1,
) -> ModelVersion:
    return assemble_version(
        config, number, labels or {}, scheduler, ModelStats(), [], CountingHistograms()
    )


class OneModel:
    """A ModelCatalog of one model's versions."""

    def __init__(self, *versions: ModelVersion) -> None:
        self.name = versions[0].name
        self.entry = ModelEntry(self.name, State.READY, "", {v.version: v for v in versions})

    @property
    def server_ready(self) -> bool:
        return True

    def get(self, name: str, version: str = "") -> ModelVersion:
        if name != self.name:
            raise ModelNotFound(f"unknown model '{name}': it is not in the model repository")
        return find_version(self.entry, version)

    def is_ready(self, name: str, version: str = "") -> bool:
        return serves(self.get, name, version)

    def versions_of(self, name: str) -> list[ModelVersion]:
        return list(self.entry.versions.values())

    def index(self, ready_only: bool = False) -> list[IndexEntry]:
        return [IndexEntry(self.name, str(v), "READY", "") for v in sorted(self.entry.versions)]

    async def repository_index(self, ready_only: bool = False) -> list[IndexEntry]:
        return self.index(ready_only)

    async def statistics(self, name: str, version: str) -> list[VersionStatistics]:
        found = self.get(name, version)
        return [found.stats.view(found.name, str(found.version))]

    async def control_load(self, name: str, config_json: str | None = None) -> None:
        pass

    async def control_unload(self, name: str) -> None:
        pass
