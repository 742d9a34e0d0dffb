"""The end of every request, seen once: its count by RPC, model and outcome, its trace span
closed, an access-log line (sampled) and a slow-request warning with where the time went."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Iterator

from ..protocol.errors import ShuttingDown
from ..settings import ServerSettings
from . import request_context, tracing
from .histograms import count_call
from .request_context import RequestRecord

access_log = logging.getLogger("deepserve.access")
slow_log = logging.getLogger("deepserve.slow")


class Observer:
    def __init__(self, settings: ServerSettings) -> None:
        self._access_ratio = settings.access_log_ratio
        self._slow_ns = int(settings.slow_request_ms * 1e6)
        self._random = random.Random()
        self.in_flight = 0
        """Calls being handled now: the drain waits for them."""
        self.draining = False
        """Set on SIGTERM: new calls are refused (UNAVAILABLE), accepted ones finish."""
        self.cancelled_while_draining = 0
        """Calls that ended CANCELLED after SIGTERM: the drain's log reports them."""
        self.arrivals = 0
        """Calls started so far: the drain's last step waits until none arrives."""
        self.held = 0
        """Refusals held at the drain's last step, until the listeners have closed."""
        self._release: asyncio.Event | None = None

    @contextlib.contextmanager
    def call(
        self, rpc: str, request_id: str, metadata: object, transport: str = "grpc"
    ) -> Iterator[RequestRecord]:
        """One call, as every transport handles it: its record is the current one while it
        runs (logs, metrics and traces read it); at the end it is counted, logged and traced
        with `record.code`, which the transport sets when the call fails."""
        record = self.start(rpc, request_id, metadata, transport)
        token = request_context.current.set(record)
        try:
            yield record
        finally:
            request_context.current.reset(token)
            self.finish(record, record.code)

    async def refuse_if_draining(self) -> None:
        """After SIGTERM new calls are refused (UNAVAILABLE: another replica takes them). At
        the drain's last step the refusal is held until the listeners have closed and each
        connection has been told to go away: a client that retries at once then waits for
        its answer instead of sending into the close, and its retry goes to a new
        connection, which is refused cleanly."""
        if not self.draining:
            return
        if self._release is not None:
            self.held += 1
            try:
                await self._release.wait()
            finally:
                self.held -= 1
        raise ShuttingDown("the server is shutting down; send the call to another replica")

    def hold_refusals(self) -> None:
        self._release = asyncio.Event()

    def release_refusals(self) -> None:
        if self._release is not None:
            self._release.set()

    def start(
        self, rpc: str, request_id: str, metadata: object, transport: str = "grpc"
    ) -> RequestRecord:
        self.in_flight += 1
        self.arrivals += 1
        record = RequestRecord(rpc=rpc, request_id=request_id)
        record.span = tracing.start_request(rpc, metadata, request_id, transport)
        return record

    def finish(self, record: RequestRecord, code: str) -> None:
        self.in_flight -= 1
        if code == "CANCELLED" and self.draining:
            self.cancelled_while_draining += 1
        count_call(record.rpc, record.model, code)
        tracing.end_request(record.span, code, record.model, record.version)
        elapsed_ns = time.perf_counter_ns() - record.started_ns
        slow = self._slow_ns and elapsed_ns >= self._slow_ns
        sampled = self._access_ratio and self._random.random() < self._access_ratio
        if not (slow or sampled):
            return
        fields = {
            "rpc": record.rpc,
            "model": record.model,
            "version": record.version,
            "code": code,
            "duration_ms": round(elapsed_ns / 1e6, 3),
            "queue_ms": round(record.queue_ns / 1e6, 3),
            "compute_ms": round(record.compute_ns / 1e6, 3),
            "batch_size": record.batch_items,
        }
        text = (
            f"{record.rpc} {record.model or '-'}"
            f"{'/' + record.version if record.version else ''} {code} "
            f"{fields['duration_ms']} ms (queue {fields['queue_ms']} ms, compute "
            f"{fields['compute_ms']} ms, batch {record.batch_items})"
        )
        extra = {"fields": fields, "request_id": record.request_id}
        if slow:
            slow_log.warning("slow request: %s", text, extra=extra)
        if sampled:
            access_log.info("%s", text, extra=extra)
