"""A split server (`--frontends N`): this process starts one engine and N front ends, keeps them
running, and stops them in order.

- The ports are bound here first with SO_REUSEPORT (a free one picked for port 0), so every
  front end binds the same ones and the kernel spreads connections over them.
- A front end that exits is started again; the calls it held fail on their own connections
  (UNAVAILABLE for gRPC clients), the others go on. An engine that exits takes readiness down
  at once (the front ends see the disconnect) and is started again.
- SIGTERM / SIGINT: the front ends drain first (new calls refused, accepted ones answered by
  the engine), then the engine stops.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from multiprocessing.context import SpawnContext
from multiprocessing.process import BaseProcess
from pathlib import Path

from ..core.auth import Authenticator, ConfigurationError, check_exposure
from ..core.decode_processes import worker_cpus
from ..settings import ServerSettings
from .shared_port import shared_port

log = logging.getLogger("deepserve.supervisor")

QUICK_EXIT_S = 5.0
"""A process that exits this soon after its start counts as failing to start."""
MAX_QUICK_EXITS = 5


class _Slot:
    """One process the supervisor keeps running."""

    def __init__(self, name: str, start: Callable[[], BaseProcess]) -> None:
        self.name = name
        self._start = start
        self.process: BaseProcess = start()
        self.started = time.monotonic()
        self.quick_exits = 0

    def restart(self) -> bool:
        """Start it again; False when it keeps failing at start (then the server stops)."""
        code = self.process.exitcode
        quick = time.monotonic() - self.started < QUICK_EXIT_S
        self.quick_exits = self.quick_exits + 1 if quick else 0
        if self.quick_exits >= MAX_QUICK_EXITS:
            log.error(
                "%s exited %d times right after starting; stopping", self.name, MAX_QUICK_EXITS
            )
            return False
        log.warning("%s exited (code %s); starting it again", self.name, code)
        time.sleep(min(0.2 * 2**self.quick_exits, 2.0) if quick else 0)
        self.process = self._start()
        self.started = time.monotonic()
        return True

    def stop(self, timeout: float) -> None:
        if self.process.is_alive():
            self.process.terminate()  # SIGTERM: a drain
        self.process.join(timeout)
        if self.process.is_alive():
            log.error("%s did not stop in %.0f s; killing it", self.name, timeout)
            self.process.kill()
            self.process.join()


def run_split(settings: ServerSettings) -> int:
    from ..observability import logs

    logs.setup(settings.log_level, settings.log_format, "supervisor")
    if settings.frontends < 0:
        raise ConfigurationError(
            f"--frontends must be 0 (one process) or more front ends, got {settings.frontends}"
        )
    check_exposure(settings, Authenticator(settings))
    worker_cpus(settings.decode_worker_cpus)  # the front ends use it: refused here, once
    context = multiprocessing.get_context("spawn")
    # Held (bound, not listening) for the front ends, which bind the same ports.
    held = [shared_port(settings.host, settings.port)]
    frontend_settings = dataclasses.replace(settings, port=held[0].getsockname()[1], metrics_port=0)
    if settings.http_port:
        held.append(shared_port(settings.http_host or settings.host, settings.http_port))
        frontend_settings = dataclasses.replace(
            frontend_settings, http_port=held[1].getsockname()[1]
        )
    runtime_dir = tempfile.mkdtemp(prefix="deepserve-")  # private (0700): the engine's socket
    address = f"ipc://{runtime_dir}/engine"
    log.info(
        "split server: %d front end(s) on port %d, one engine (pid %d supervises)",
        settings.frontends,
        frontend_settings.port,
        os.getpid(),
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    engine = _Slot(
        "the engine",
        lambda: _start(context, "deepserve-engine", engine_process_main, settings, address),
    )
    frontends = [
        _Slot(
            f"front end {i}",
            functools.partial(
                _start,
                context,
                f"deepserve-frontend-{i}",
                _frontend_main,
                frontend_settings,
                address,
                i,
            ),
        )
        for i in range(settings.frontends)
    ]
    code = 0
    try:
        while not stop.is_set():
            slots = [engine, *frontends]
            wait([slot.process.sentinel for slot in slots], timeout=0.2)
            for slot in slots:
                if not slot.process.is_alive() and not stop.is_set() and not slot.restart():
                    stop.set()
                    code = 1
    finally:
        grace = settings.grace_seconds + 10
        threads = [threading.Thread(target=f.stop, args=(grace,)) for f in frontends]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        engine.stop(grace)
        for holder in held:
            holder.close()
        shutil.rmtree(runtime_dir, ignore_errors=True)
        log.info("split server stopped")
    return code


def _start(
    context: SpawnContext, name: str, target: Callable[..., None], *args: object
) -> BaseProcess:
    process = context.Process(target=target, args=args, name=name, daemon=False)
    process.start()
    return process


ENGINE_NAME = "ds-engine"
FRONTEND_NAME = "ds-frontend-{}"


def _name_process(name: str) -> None:
    """`ps`, `top` and the benchmarks tell the engine from the front ends by this name (the
    kernel keeps 15 characters; Linux only)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/comm").write_text(name[:15])


def engine_process_main(settings: ServerSettings, address: str) -> None:
    """The engine process's body (a spawned process's target)."""
    from ..event_loop import run
    from ..observability import logs
    from .engine import run_engine

    _name_process(ENGINE_NAME)
    logs.setup(settings.log_level, settings.log_format, "engine")
    _stop_with_parent()
    run(run_engine(settings, address), settings.event_loop)


def _frontend_main(settings: ServerSettings, address: str, index: int) -> None:
    from ..app import serve
    from ..event_loop import run
    from ..observability import logs
    from .hosts import EngineLink

    _name_process(FRONTEND_NAME.format(index))
    logs.setup(settings.log_level, settings.log_format, f"frontend-{index}")
    engine = EngineLink(address, f"frontend-{index}-{os.getpid()}")
    _stop_with_parent()
    run(serve(settings, engine), settings.event_loop)


def _stop_with_parent() -> None:
    """A child whose supervisor is gone (killed) stops as on SIGTERM, rather than serve
    unsupervised."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()
