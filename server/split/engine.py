"""The engine process of a split server: it owns the model versions, their schedulers and ONNX
Runtime sessions, the statistics and the Prometheus endpoint. Front ends send it decoded,
validated tensors over a ZeroMQ ROUTER socket; it answers with the outputs, and pushes the
model table to every front end whenever a model changes (and every second, as a heartbeat)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import zmq
import zmq.asyncio

from .. import gpu_options, histograms, repository
from ..errors import ModelNotFound, ServingError
from ..manager import ModelManager
from ..metrics import serve_metrics
from ..repository_watch import watch_repository
from ..settings import ServerSettings
from ..stats import RequestTiming
from . import wire

log = logging.getLogger("deepserve.engine")

TABLE_INTERVAL_S = 1.0


class Engine:
    def __init__(self, settings: ServerSettings, address: str) -> None:
        self.settings = settings
        self.address = address
        self._executor = ThreadPoolExecutor(
            max_workers=max(4, (os.cpu_count() or 1) * 2), thread_name_prefix="deepserve-infer"
        )
        self.manager = ModelManager(settings, self._executor, on_change=self._changed)
        self._context = zmq.asyncio.Context()
        self._socket = self._context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.LINGER, 0)
        # No message limit (a ROUTER drops what is past it): the model queues bound the work.
        self._socket.setsockopt(zmq.SNDHWM, 0)
        self._socket.setsockopt(zmq.RCVHWM, 0)
        self._frontends: set[bytes] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- the model table, pushed to the front ends ------------------------------------------

    def table(self) -> dict[str, Any]:
        entries = []
        for entry in self.manager.entries():
            versions = [
                [v.version, v.config.SerializeToString(), v.labels, v.providers]
                for v in entry.versions.values()
            ]
            entries.append([entry.name, entry.state.value, entry.reason, versions])
        return {
            "ready": self.manager.server_ready,
            "names": repository.model_names(self.settings.model_repository),
            "entries": entries,
            "index": [list(row.__dict__.values()) for row in self.manager.index()],
        }

    def _changed(self) -> None:
        self._push_table()

    def _push_table(self) -> None:
        if not self._frontends:
            return
        message = wire.pack([0, "table", self.table()])
        for identity in list(self._frontends):
            self._send([identity, message])

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(TABLE_INTERVAL_S)
            self._push_table()

    # ---- requests ----------------------------------------------------------------------------

    async def serve(self, stop: asyncio.Event) -> None:
        self._socket.bind(self.address)
        log.info("engine (pid %d) serving the models to the front ends", os.getpid())
        gpu_options.log_runtime(self.settings.device)
        serve_metrics(
            self.manager,
            self.settings.metrics_host or self.settings.host,
            self.settings.metrics_port,
        )
        loading = asyncio.create_task(self.manager.load_all(self.settings.models))
        background = [loading, asyncio.create_task(self._heartbeat())]
        if self.settings.model_control_mode == "poll":
            background.append(
                asyncio.create_task(
                    watch_repository(self.manager, self.settings.repository_poll_seconds, loading)
                )
            )
        receiving = asyncio.create_task(self._receive())
        await stop.wait()
        receiving.cancel()
        for task in background:
            task.cancel()
        # The front ends have drained before the engine is told to stop; what is still here
        # finishes (bounded by the grace period).
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.settings.grace_seconds)
        self._socket.close(linger=0)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _receive(self) -> None:
        while True:
            frames = await self._socket.recv_multipart(copy=False)
            identity, header, buffers = frames[0].bytes, wire.unpack(frames[1].buffer), frames[2:]
            kind, request_id = header[0], header[1]
            if kind == "submit":
                self._spawn(self._submit(identity, request_id, header, buffers))
            elif kind == "done":
                self._record(header)
            elif kind == "calls":
                for rpc, model, code, count in header[2]:
                    histograms.count_call(rpc, model, code, count)
            elif kind == "hello":
                self._frontends.add(identity)
                log.info("front end %s connected", identity.decode(errors="replace"))
                self._reply(identity, [0, "table", self.table()])
            elif kind == "bye":
                self._frontends.discard(identity)
            else:
                self._spawn(self._control(identity, request_id, kind, header[2:]))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _reply(self, identity: bytes, header: list[Any], frames: Sequence[Any] = ()) -> None:
        self._send([identity, wire.pack(header), *frames])

    def _send(self, frames: list[Any]) -> None:
        """Queued without limit; a front end that is gone is skipped by the ROUTER socket."""
        sent = self._socket.send_multipart(frames, copy=False)
        sent.add_done_callback(_log_failure)

    async def _submit(
        self, identity: bytes, request_id: int, header: list[Any], buffers: list[Any]
    ) -> None:
        _, _, name, version, pinned, items, outputs, priority, timeout_us, deadline_s, feeds = (
            header
        )
        try:
            model = self.manager.get(name, str(version) if pinned else "")
            result = await model.scheduler.submit(
                wire.arrays(feeds, buffers),
                items,
                outputs,
                priority=priority,
                timeout_us=timeout_us,
                deadline_s=deadline_s,
            )
        except ServingError as exc:
            self._reply(identity, wire.error_reply(request_id, exc))
            return
        descriptors, frames = wire.describe(result.outputs)
        body = [
            result.queue_ns,
            result.batch_input_ns,
            result.infer_ns,
            result.batch_output_ns,
            result.batch_items,
            descriptors,
            model.stats.inference_count,
            model.stats.execution_count,
        ]
        self._reply(identity, [request_id, "ok", body], frames)

    def _record(self, header: list[Any]) -> None:
        """A front end's account of one finished request: the model's statistics and
        histograms are kept here, so every front end's requests count in one place."""
        _, _, name, version, total_ns, timing = header
        try:
            model = self.manager.get(name, str(version))
        except ServingError:
            return  # unloaded since
        if timing is None:
            model.stats.record_failure(total_ns)
            return
        recorded = RequestTiming(*timing)
        model.stats.record_success(total_ns, recorded)
        model.histograms.observe_request(total_ns, recorded.queue_ns, recorded.batch_items)

    async def _control(self, identity: bytes, request_id: int, kind: str, args: list[Any]) -> None:
        try:
            body: Any = None
            if kind == "statistics":
                body = [s.SerializeToString() for s in await self.manager.statistics(*args)]
            elif kind == "index":
                body = [list(row.__dict__.values()) for row in self.manager.index(*args)]
            elif kind == "load":
                await self.manager.control_load(*args)
            elif kind == "unload":
                await self.manager.control_unload(*args)
            else:
                raise ModelNotFound(f"the engine has no call '{kind}'")
        except ServingError as exc:
            self._reply(identity, wire.error_reply(request_id, exc))
            return
        self._reply(identity, [request_id, "ok", body])


async def run_engine(settings: ServerSettings, address: str) -> None:
    """The engine until SIGTERM (SIGINT is the supervisor's: it stops the front ends first)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    await Engine(settings, address).serve(stop)
    log.info("engine stopped")


def _log_failure(sent: asyncio.Future[Any]) -> None:
    if not sent.cancelled() and sent.exception() is not None:
        log.error("a message to a front end was not sent: %s", sent.exception())
