"""The engine process of a split server: it owns the model versions, their schedulers and ONNX
Runtime sessions, the statistics and the Prometheus endpoint. Front ends send it decoded,
validated tensors over a ZeroMQ ROUTER socket; it answers with the outputs, and pushes the
model table to every front end whenever a model changes (and every second, as a heartbeat)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import itertools
import logging
import os
import signal
import time
from collections.abc import Sequence
from typing import Any

import zmq

from ..batching.decode_loop import DecodeLoop
from ..batching.scheduler import JobResult, Scheduler
from ..batching.sequences import SequenceScheduler
from ..core.shared_memory import SharedMemory
from ..models import repository
from ..models.ensemble import EnsembleScheduler
from ..models.manager import ModelManager
from ..models.model import ModelVersion
from ..models.watch import watch_repository
from ..observability import histograms
from ..observability.histograms import VersionHistograms
from ..observability.metrics import serve_metrics
from ..protocol.errors import InferenceFailed, InvalidInput, ModelNotFound, ServingError
from ..protocol.sequence_config import SequenceStep
from ..runtime import gpu_options
from ..runtime import sessions as runtime
from ..settings import ServerSettings
from . import wire
from .pump import Pump

log = logging.getLogger("deepserve.engine")

TABLE_INTERVAL_S = 1.0
FLUSH_WAIT_S = 0.5


def _own_scheduler(model: ModelVersion) -> Scheduler | SequenceScheduler | EnsembleScheduler:
    """The engine's versions run in it: their schedulers are the batchers themselves (an
    ensemble's, its steps' batchers)."""
    scheduler = model.scheduler
    if not isinstance(scheduler, Scheduler | SequenceScheduler | EnsembleScheduler):
        raise InferenceFailed(f"model '{model.name}' is not run by this engine")
    return scheduler


class Engine:
    def __init__(self, settings: ServerSettings, address: str) -> None:
        self.settings = settings
        self.address = address
        self._executor = runtime.inference_executor()
        self.manager = ModelManager(settings, self._executor, on_change=self._changed)
        self.shared_memory = SharedMemory()
        """The split server's shared memory registrations: every front end maps the same."""
        self._context = zmq.Context()
        self._pump: Pump | None = None
        self._frontends: set[bytes] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        self._flush_ids = itertools.count(1)
        self._flushes: dict[int, tuple[set[bytes], asyncio.Future[None]]] = {}
        self._generating: dict[tuple[bytes, int], asyncio.Task[None]] = {}
        """Answers of text generators under way, by front end and its request id."""

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
            "index": self._index_rows(),
            "regions": self._region_rows(),
        }

    def _region_rows(self) -> list[list[Any]]:
        return [list(dataclasses.astuple(region)) for region in self.shared_memory.status()]

    def _index_rows(self, ready_only: bool = False) -> list[tuple[str, ...]]:
        return [dataclasses.astuple(row) for row in self.manager.index(ready_only)]

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

    # ---- running -----------------------------------------------------------------------------

    async def serve(self, stop: asyncio.Event) -> None:
        socket = self._context.socket(zmq.ROUTER)
        socket.setsockopt(zmq.LINGER, 0)
        # No message limit (a ROUTER drops what is past it): the model queues bound the work.
        socket.setsockopt(zmq.SNDHWM, 0)
        socket.setsockopt(zmq.RCVHWM, 0)
        socket.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a front end gone raises
        socket.bind(self.address)
        self._pump = Pump(socket, self._on_message, self._undelivered)
        log.info("engine (pid %d) serving the models to the front ends", os.getpid())
        gpu_options.log_runtime(self.settings.device)
        settings = self.settings
        loop = asyncio.get_running_loop()

        def gather_for_scrape() -> None:  # on the metrics thread
            gathering = asyncio.run_coroutine_threadsafe(self._gather_records(b""), loop)
            gathering.result(timeout=FLUSH_WAIT_S + 1)

        serve_metrics(
            self.manager,
            settings.metrics_host or settings.host,
            settings.metrics_port,
            gather_for_scrape,
        )
        loading = asyncio.create_task(self.manager.load_all(self.settings.models))
        background = [loading, asyncio.create_task(self._heartbeat())]
        if self.settings.model_control_mode == "poll":
            background.append(
                asyncio.create_task(
                    watch_repository(self.manager, self.settings.repository_poll_seconds, loading)
                )
            )
        await stop.wait()
        for task in background:
            task.cancel()
        # The front ends have drained before the engine is told to stop; what is still here
        # finishes (bounded by the grace period).
        deadline = time.monotonic() + self.settings.grace_seconds
        while (self._in_flight or self._tasks) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        self._pump.close()
        self.shared_memory.close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ---- messages ----------------------------------------------------------------------------

    def _on_message(self, frames: list[zmq.Frame]) -> None:
        identity = frames[0].bytes
        kind, request_id, records, *fields = wire.unpack(frames[1].buffer)
        for what, *record in records:
            if what == "calls":
                for rpc, model, code, count in record[0]:
                    histograms.count_call(rpc, model, code, count)
            else:
                self._record(*record)
        if kind == "submit":
            self._submit(identity, request_id, fields, frames[2:])
        elif kind == "hello":
            self._frontends.add(identity)
            log.info("front end %s connected", identity.decode(errors="replace"))
            self._reply(identity, [0, "table", self.table()])
        elif kind == "generate":
            self._generate(identity, request_id, fields)
        elif kind == "cancel":
            task = self._generating.pop((identity, fields[0]), None)
            if task is not None:
                task.cancel()
        elif kind == "flushed":
            self._flushed(identity, fields[0])
        elif kind == "bye":
            self._gone(identity)
        elif kind != "records":
            task = asyncio.create_task(self._control(identity, request_id, kind, fields))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _reply(self, identity: bytes, header: list[Any], frames: Sequence[Any] = ()) -> None:
        self._send([identity, wire.pack(header), *frames])

    def _send(self, frames: list[Any]) -> None:
        assert self._pump is not None
        self._pump.post(frames)

    def _undelivered(self, identity: bytes, messages: list[Any], exc: zmq.ZMQError) -> None:
        if exc.errno != zmq.EHOSTUNREACH:
            log.error("%d message(s) to a front end not sent: %s", len(messages), exc)
        self._gone(identity)  # its calls' answers have nobody to go to

    def _gone(self, identity: bytes) -> None:
        self._frontends.discard(identity)
        for key in [key for key in self._generating if key[0] == identity]:
            self._generating.pop(key).cancel()  # nobody is there to read the tokens
        for seq in list(self._flushes):
            self._flushed(identity, seq)

    # ---- statistics from every front end ----------------------------------------------------

    async def _gather_records(self, asker: bytes) -> None:
        """Every other front end sends the statistics and call counts it holds (the asker's
        came with its call), so ModelStatistics and a scrape count every request answered
        before they were asked."""
        others = self._frontends - {asker}
        if not others:
            return
        seq = next(self._flush_ids)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flushes[seq] = (set(others), done)
        for identity in others:
            self._send([identity, wire.pack([seq, "flush", None])])
        try:
            await asyncio.wait_for(done, FLUSH_WAIT_S)
        except TimeoutError:
            log.warning("a front end did not send its statistics in %.1f s", FLUSH_WAIT_S)
        finally:
            self._flushes.pop(seq, None)

    def _flushed(self, identity: bytes, seq: int) -> None:
        waiting = self._flushes.get(seq)
        if waiting is None:
            return
        waiting[0].discard(identity)
        if not waiting[0] and not waiting[1].done():
            waiting[1].set_result(None)

    def _submit(
        self, identity: bytes, request_id: int, fields: list[Any], buffers: list[zmq.Frame]
    ) -> None:
        # `requests`: how many of a front end's requests this one job carries
        # `sequence`: a sequence model's step, [id, start, end]
        (name, version, pinned, items, outputs, priority, timeout_us, deadline_s, feeds, requests,
         sequence) = fields  # fmt: skip
        try:
            model = self.manager.get(name, str(version) if pinned else "")
            scheduler = _own_scheduler(model)
            arrays = wire.arrays(feeds, buffers)
            job: asyncio.Future[JobResult]
            if isinstance(scheduler, EnsembleScheduler):
                job = asyncio.ensure_future(
                    scheduler.submit(arrays, items, outputs, priority, timeout_us, deadline_s)
                )
            elif isinstance(scheduler, SequenceScheduler):
                step = SequenceStep(*sequence) if sequence is not None else None
                job = asyncio.ensure_future(
                    scheduler.submit(arrays, items, outputs, deadline_s=deadline_s, sequence=step)
                )
            else:
                job = scheduler.enqueue(
                    arrays,
                    items,
                    outputs,
                    priority=priority,
                    timeout_us=timeout_us,
                    deadline_s=deadline_s,
                    requests=requests,
                )
        except ServingError as exc:
            self._reply(identity, wire.error_reply(request_id, exc))
            return
        self._in_flight += 1
        job.add_done_callback(functools.partial(self._answer, identity, request_id, model))

    def _generate(self, identity: bytes, request_id: int, fields: list[Any]) -> None:
        """A text generator's answer: a "more" reply a token, then "ok" (or the error)."""
        name, version, pinned, text, max_tokens, deadline_s = fields
        key = (identity, request_id)

        async def answer() -> None:
            try:
                model = self.manager.get(name, str(version) if pinned else "")
                loop = model.scheduler
                if not isinstance(loop, DecodeLoop):
                    raise InvalidInput(f"model '{model.name}' is not a text generator")
                tokens = loop.generate(text, max_tokens, deadline_s)
                async with contextlib.aclosing(tokens):
                    async for token in tokens:
                        descriptors, frames = wire.describe(token.extras)
                        body = [token.id, token.text, descriptors]
                        self._reply(identity, [request_id, "more", body], frames)
                self._reply(identity, [request_id, "ok", None])
            except ServingError as exc:
                self._reply(identity, wire.error_reply(request_id, exc))
            except Exception as exc:
                log.exception("model '%s': generating failed", name)
                failure = InferenceFailed(f"{type(exc).__name__}: {exc}")
                self._reply(identity, wire.error_reply(request_id, failure))
            finally:
                self._generating.pop(key, None)

        self._generating[key] = asyncio.create_task(answer())

    def _answer(
        self,
        identity: bytes,
        request_id: int,
        model: ModelVersion,
        job: asyncio.Future[JobResult],
    ) -> None:
        self._in_flight -= 1
        if job.cancelled():
            return
        failure = job.exception()
        if failure is not None:
            if not isinstance(failure, ServingError):
                failure = InferenceFailed(f"{type(failure).__name__}: {failure}")
            self._reply(identity, wire.error_reply(request_id, failure))
            return
        result = job.result()
        descriptors, frames = wire.describe(result.outputs)
        scheduler = _own_scheduler(model)
        body = [
            result.queue_ns,
            result.batch_input_ns,
            result.infer_ns,
            result.batch_output_ns,
            result.batch_items,
            descriptors,
            scheduler.backlog_ns(),
            scheduler.item_ns(),
            model.stats.inference_count,
            model.stats.execution_count,
        ]
        self._reply(identity, [request_id, "ok", body], frames)

    def _record(
        self, name: str, version: int, totals: list[list[int]], counts: list[list[float]]
    ) -> None:
        """A front end's sums over the requests it finished since its last message: the
        model's statistics and histograms are kept here, so every front end counts in one
        place (and a front end that dies loses at most what it had not sent)."""
        try:
            model = self.manager.get(name, str(version))
        except ServingError:
            return  # unloaded since
        model.stats.add_request_totals(totals)
        histograms = model.histograms
        if isinstance(histograms, VersionHistograms):  # the engine's own versions' always are
            histograms.add_request_counts(counts)

    async def _control(self, identity: bytes, request_id: int, kind: str, args: list[Any]) -> None:
        try:
            body: Any = None
            if kind == "statistics":
                await self._gather_records(identity)
                body = [wire.statistics_fields(s) for s in await self.manager.statistics(*args)]
            elif kind == "index":
                body = self._index_rows(*args)
            elif kind == "load":
                await self.manager.control_load(*args)
            elif kind == "unload":
                await self.manager.control_unload(*args)
            elif kind in ("shm_register", "shm_unregister"):
                # Kept here and pushed to every front end before the answer, so that a client's
                # next call, whichever front end takes it, finds the region mapped.
                if kind == "shm_register":
                    self.shared_memory.register(*args)
                else:
                    self.shared_memory.unregister(*args)
                self._push_table()
                body = self._region_rows()
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
