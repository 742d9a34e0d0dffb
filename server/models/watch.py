"""`--model-control-mode poll`: look at the repository now and then, and load what is new,
reload what changed (with the same no-drop swap as a load call) and unload what went away."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from ..protocol.errors import ModelLoadError, ModelNotFound
from . import repository
from .manager import ModelManager

log = logging.getLogger(__name__)

Snapshot = dict[str, tuple[tuple[str, int, int], ...]]


def _fingerprint(model_dir: Path) -> tuple[tuple[str, int, int], ...]:
    """(relative path, size, mtime) of every file of a model, so any change shows."""
    rows = []
    for path in sorted(model_dir.rglob("*")):
        try:
            if path.is_file():
                stat = path.stat()
                rows.append((str(path.relative_to(model_dir)), stat.st_size, stat.st_mtime_ns))
        except OSError:
            continue  # removed while we looked: the next look sees the result
    return tuple(rows)


def snapshot(root: Path, names: list[str] | None = None) -> Snapshot:
    return {name: _fingerprint(root / name) for name in names or repository.model_names(root)}


async def watch_repository(
    manager: ModelManager, interval_s: float, startup: asyncio.Task[None]
) -> None:
    root = manager.settings.model_repository
    wanted = list(manager.settings.models)
    seen = await asyncio.to_thread(snapshot, root, wanted or None)
    await startup
    while True:
        await asyncio.sleep(interval_s)
        now = await asyncio.to_thread(snapshot, root, wanted or None)
        for name in sorted(now):
            if now[name] == seen.get(name):
                continue
            log.info("repository poll: model '%s' %s", name, "changed" if name in seen else "added")
            try:
                await manager.load(name)
            except (ModelLoadError, ModelNotFound) as exc:
                log.error("repository poll: model '%s' failed to load: %s", name, exc)
        for name in sorted(set(seen) - set(now)):
            log.info("repository poll: model '%s' removed", name)
            await manager.unload(name, reason="removed from the repository")
        seen = now
