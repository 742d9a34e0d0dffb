"""Which models are loaded: loading, reloading and unloading without dropping traffic.

A reload builds the new versions while the old ones keep serving, then swaps them in one step;
requests already holding the old version finish on it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from enum import StrEnum

from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as mc

from ..protocol.errors import (
    InvalidInput,
    ModelLoadError,
    ModelNotFound,
    ModelUnavailable,
    PermissionDenied,
    ServingError,
)
from ..protocol.numbers import decimal
from ..protocol.types import IndexEntry, VersionStatistics
from ..settings import ServerSettings
from . import repository
from .ensemble import EnsembleScheduler, is_ensemble
from .limits import check_resources
from .model import ModelVersion, load_version

log = logging.getLogger(__name__)


class State(StrEnum):
    LOADING = "LOADING"
    READY = "READY"
    UNLOADING = "UNLOADING"
    UNAVAILABLE = "UNAVAILABLE"


@dataclass
class ModelEntry:
    name: str
    state: State = State.UNAVAILABLE
    reason: str = ""
    versions: dict[int, ModelVersion] = field(default_factory=dict)
    wanted: bool = False
    """True when the model should be loaded: it counts for ServerReady."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def not_in_repository(name: str) -> ModelNotFound:
    return ModelNotFound(f"unknown model '{name}': it is not in the model repository")


def find_version(entry: ModelEntry, version: str) -> ModelVersion:
    """The version of a model a request names (its newest when `version` is empty)."""
    name = entry.name
    if entry.state is not State.READY and not entry.versions:
        detail = f": {entry.reason}" if entry.reason else ""
        raise ModelUnavailable(f"model '{name}' is not ready (state {entry.state}){detail}")
    versions = entry.versions
    if not version:
        return versions[max(versions)]
    number = decimal(version)
    if number is None:
        raise ModelNotFound(
            f"model '{name}' has no version '{version[:64]}': versions are integers"
        )
    found = versions.get(number)
    if found is None:
        raise ModelNotFound(
            f"model '{name}' version {version} is not served; served versions: {sorted(versions)}"
        )
    return found


def serves(get: Callable[[str, str], ModelVersion], name: str, version: str) -> bool:
    """Whether `get` (a catalog's) finds the version: ModelReady's answer."""
    try:
        get(name, version)
    except (ModelNotFound, ModelUnavailable):
        return False
    return True


class ModelManager:
    """The models of this process: loads, swaps and unloads versions (the engine's, in a
    split server)."""

    def __init__(
        self,
        settings: ServerSettings,
        executor: Executor,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self._executor = executor
        self._entries: dict[str, ModelEntry] = {}
        self._notify = on_change
        self.startup_done = False

    def _on_change(self) -> None:
        self._refresh_ensembles()
        self._notify()

    def _refresh_ensembles(self) -> None:
        """An ensemble is ready while every step's model serves; else UNAVAILABLE, naming the
        step (its calls fail naming it too)."""
        for entry in self._entries.values():
            newest = entry.versions.get(max(entry.versions)) if entry.versions else None
            if newest is None or not isinstance(newest.scheduler, EnsembleScheduler):
                continue
            down = [
                f"{step.label}: {problem}"
                for step, problem in newest.scheduler.step_models()
                if isinstance(problem, ServingError)
            ]
            if down:
                entry.state, entry.reason = State.UNAVAILABLE, down[0]
            elif entry.state is State.UNAVAILABLE:
                entry.state, entry.reason = State.READY, ""

    # ---- queries -------------------------------------------------------------------------

    def _in_repository(self, name: str) -> bool:
        return name in repository.model_names(self.settings.model_repository)

    def _entry(self, name: str) -> ModelEntry:
        entry = self._entries.get(name)
        if entry is None:
            if name and self._in_repository(name):
                entry = self._entries[name] = ModelEntry(name=name)
            else:
                raise not_in_repository(name)
        return entry

    def get(self, name: str, version: str = "") -> ModelVersion:
        """The version a request names (the newest one served when `version` is empty)."""
        return find_version(self._entry(name), version)

    def is_ready(self, name: str, version: str = "") -> bool:
        """Served and READY (an ensemble whose step is down serves, but is not ready)."""
        return serves(self.get, name, version) and self._entry(name).state is State.READY

    def ready_models(self) -> list[ModelVersion]:
        return [v for e in self._entries.values() for v in e.versions.values()]

    def entries(self) -> list[ModelEntry]:
        """Every model the manager has looked at, loaded or not."""
        return list(self._entries.values())

    def versions_of(self, name: str) -> list[ModelVersion]:
        return list(self._entry(name).versions.values())

    async def statistics(self, name: str, version: str) -> list[VersionStatistics]:
        """The protocol's statistics, one message per model version."""
        if not name:
            models = self.ready_models()
        elif version:
            models = [self.get(name, version)]
        else:
            self.get(name)  # raises NOT_FOUND / UNAVAILABLE as ModelInfer would
            models = self.versions_of(name)
        return [m.stats.view(m.name, str(m.version)) for m in models]

    @property
    def server_ready(self) -> bool:
        wanted = [e for e in self._entries.values() if e.wanted]
        if not self.startup_done or not wanted:
            return False
        ready = [e for e in wanted if e.state is State.READY]
        return len(ready) == len(wanted) if self.settings.strict_readiness else bool(ready)

    def index(self, ready_only: bool = False) -> list[IndexEntry]:
        names = sorted(
            set(repository.model_names(self.settings.model_repository)) | set(self._entries)
        )
        rows: list[IndexEntry] = []
        for name in names:
            entry = self._entries.get(name)
            if entry and entry.versions:
                rows.extend(
                    IndexEntry(name, str(v), entry.state.value, entry.reason)
                    for v in sorted(entry.versions)
                )
            elif not ready_only:
                state = entry.state.value if entry else State.UNAVAILABLE.value
                reason = entry.reason if entry else "not loaded"
                rows.append(IndexEntry(name, "", state, reason))
        if ready_only:
            rows = [r for r in rows if r.state == State.READY.value]
        return rows

    async def repository_index(self, ready_only: bool = False) -> list[IndexEntry]:
        """RepositoryIndex: what the repository holds now (a front end asks its engine)."""
        return self.index(ready_only)

    # ---- changes -------------------------------------------------------------------------

    async def load_all(self, names: tuple[str, ...] = ()) -> None:
        """Load the given models (every model in the repository when empty), in parallel."""
        wanted = list(names) or repository.model_names(self.settings.model_repository)
        # Ensembles after the models they chain: their steps are checked against those.
        chains = [n for n in wanted if self._is_ensemble(n)]
        await asyncio.gather(*(self._load_logged(n) for n in wanted if n not in chains))
        for name in chains:  # one after another: an ensemble may chain another
            await self._load_logged(name)
        self.startup_done = True
        self._on_change()

    def _is_ensemble(self, name: str) -> bool:
        try:
            config = repository.read_config(self.settings.model_repository / name)
        except ModelLoadError:
            return False  # its load says why
        return is_ensemble(config)

    async def _load_logged(self, name: str) -> None:
        try:
            await self.load(name)
        except (ModelLoadError, ModelNotFound) as exc:
            log.error("model '%s' failed to load: %s", name, exc)

    async def load(self, name: str, config_override: mc.ModelConfig | None = None) -> None:
        """(Re)load a model's versions. The old versions keep serving until the new are ready."""
        entry = self._entry(name)
        async with entry.lock:
            entry.wanted = True
            if not entry.versions:
                entry.state = State.LOADING
            entry.reason = ""
            self._on_change()
            try:
                versions = await asyncio.to_thread(self._build_checked, name, config_override)
            except ModelLoadError as exc:
                exc.args = (repository.redact(str(exc), self.settings.model_repository),)
                # A failed reload leaves the versions already serving in place.
                entry.state = State.READY if entry.versions else State.UNAVAILABLE
                entry.reason = str(exc)
                self._on_change()
                raise
            replaced, entry.versions = entry.versions, versions
            for number, old in replaced.items():
                old.scheduler.retire()
                if number not in versions:  # a version kept shares its series with the new
                    old.histograms.remove()
            entry.state = State.READY
            log.info("model '%s' ready: versions %s", name, sorted(versions))
            self._on_change()

    def _build_checked(
        self, name: str, config_override: mc.ModelConfig | None
    ) -> dict[int, ModelVersion]:
        try:
            return self._build(name, config_override)
        except ModelLoadError:
            raise
        except Exception as exc:  # a reason for the index, not an INTERNAL for the caller
            log.exception("model '%s': unexpected error while loading", name)
            raise ModelLoadError(f"{type(exc).__name__}: {exc}") from exc

    def _build(self, name: str, config_override: mc.ModelConfig | None) -> dict[int, ModelVersion]:
        model_dir = self.settings.model_repository / name
        if config_override is not None:
            config = mc.ModelConfig()
            config.CopyFrom(config_override)
            repository.check_config(config, name, "the 'config' parameter")
        else:
            config = repository.read_config(model_dir)
        check_resources(config, self.settings)
        chosen = repository.select_versions(config, repository.version_folders(model_dir))
        return {
            v: load_version(model_dir, config, v, self.settings, self._executor, self.get)
            for v in chosen
        }

    # ---- repository control from callers (RepositoryModelLoad / Unload) ----------------------

    def _check_control(self, what: str) -> None:
        mode = self.settings.model_control_mode
        if mode != "explicit":
            raise PermissionDenied(
                f"{what} is refused: this server's model control mode is '{mode}' (the "
                + (
                    "repository is loaded at start"
                    if mode == "none"
                    else "server loads what appears in the repository itself"
                )
                + "); start it with --model-control-mode explicit to load and unload by call"
            )

    async def control_load(self, name: str, config_json: str | None = None) -> None:
        """A caller's load, with an optional config override in JSON (checked like a
        config.pbtxt); a failed load is the caller's INVALID_ARGUMENT."""
        self._check_control("RepositoryModelLoad")
        override = None
        if config_json is not None:
            try:
                override = json_format.Parse(config_json, mc.ModelConfig())
            except json_format.ParseError as exc:
                raise InvalidInput(
                    f"parameter 'config' is not a ModelConfig in JSON: {exc}"
                ) from exc
        try:
            await self.load(name, override)
        except ModelLoadError as exc:
            raise InvalidInput(f"failed to load model '{name}': {exc}") from exc

    async def control_unload(self, name: str) -> None:
        self._check_control("RepositoryModelUnload")
        await self.unload(name)

    async def unload(
        self, name: str, reason: str = "unloaded by a RepositoryModelUnload call"
    ) -> None:
        entry = self._entry(name)
        async with entry.lock:
            entry.wanted = False
            entry.state = State.UNLOADING
            self._on_change()
            # In-flight requests keep their own reference and finish.
            replaced, entry.versions = entry.versions, {}
            for old in replaced.values():
                old.scheduler.retire()
                old.histograms.remove()
            entry.state = State.UNAVAILABLE
            entry.reason = reason
            log.info("model '%s' unloaded", name)
            self._on_change()
