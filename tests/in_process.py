"""A real deepserve server on a free port, run in this process on its own event loop thread,
for tests that must look inside it (its spans, with an in-memory exporter)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from deepserve.server.app import Server
from deepserve.server.settings import ServerSettings

from .server_process import free_port

T = TypeVar("T")


@dataclass
class InProcessServer:
    server: Server
    run: Callable[[Coroutine[Any, Any, T]], T]  # runs a coroutine on the server's loop


@contextlib.contextmanager
def in_process_server(repository: Path, **settings: object) -> Iterator[InProcessServer]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=60)

    async def build() -> Server:
        return Server(
            ServerSettings(
                model_repository=repository,
                port=free_port(),
                metrics_port=0,
                grace_seconds=2,
                **settings,  # type: ignore[arg-type]
            )
        )

    server = run(build())
    run(server.start())
    try:
        deadline = time.monotonic() + 60
        while not server.models.server_ready:
            assert time.monotonic() < deadline, "models did not load"
            time.sleep(0.05)
        yield InProcessServer(server, run)
    finally:
        run(server.stop())

        async def cancel_the_rest() -> None:  # the schedulers' idle batch loops
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        run(cancel_the_rest())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
