"""The data plane: what both transports share. Finds the model, validates and decodes the
request, runs it through the model's scheduler, encodes the answer and keeps the statistics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TypeVar

import numpy as np

from ..batching.scheduler import JobResult
from ..batching.stats import RequestTiming
from ..models.catalog import ModelCatalog
from ..models.model import ModelVersion
from ..observability import request_context
from ..protocol import codecs
from ..protocol.classification import top_k
from ..protocol.errors import InvalidInput, LimitExceeded, ServingError
from ..protocol.sequence_config import sequence_step
from ..protocol.types import (
    InferRequest,
    InferResponse,
    OutputTensor,
    RequestedOutput,
)
from . import generation
from .inputs import UNLIMITED, RequestLimits, decode_inputs, requested_outputs, shared
from .response_cache import ResponseCache
from .shared_memory import RegionRegistry, SharedMemory

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


def _check_response_size(
    model: ModelVersion, wanted: list[RequestedOutput], batch: int, limit: int
) -> None:
    """Outputs of static shape have a size known before the work: refuse what cannot be sent."""
    total = 0
    for output in wanted:
        spec = model.outputs[output.name]
        if output.region is not None:
            continue  # written into shared memory, not the answer
        if output.classification or spec.datatype == "BYTES" or not spec.static:
            continue
        items = batch if model.max_batch_size > 0 else 1
        total += (
            items * codecs.element_count(spec.dims) * codecs.numpy_dtype(spec.datatype).itemsize
        )
    if total > limit:
        raise LimitExceeded(
            f"the requested outputs would take {total} bytes, more than the response limit of "
            f"{limit} bytes (max_message_mb); send a smaller batch or request fewer outputs"
        )


def _int_parameter(request: InferRequest, key: str) -> int:
    """A request parameter that must be a non-negative integer (`priority`, `timeout`)."""
    value = request.parameters.get(key, 0)
    if type(value) is not int or value < 0:
        raise InvalidInput(f"request parameter '{key}' must be a non-negative integer")
    return value


def _timing(result: JobResult, before_ns: int, after_ns: int) -> RequestTiming:
    """Where a request's time went: its own work before and after the batch is counted with
    the batch's merge and split as compute time, as in Triton."""
    return RequestTiming(
        queue_ns=result.queue_ns,
        compute_input_ns=before_ns + result.batch_input_ns,
        compute_infer_ns=result.infer_ns,
        compute_output_ns=after_ns + result.batch_output_ns,
        batch_items=result.batch_items,
    )


def _response(
    model: ModelVersion,
    request: InferRequest,
    wanted: list[RequestedOutput],
    arrays: dict[str, np.ndarray],
    shared_memory: SharedMemory | None,
) -> InferResponse:
    outputs = []
    for output in wanted:
        array = arrays[output.name]
        if output.classification:
            array = top_k(
                array,
                output.classification,
                model.max_batch_size > 0,
                model.labels.get(output.name),
                output.name,
            )
        datatype = codecs.datatype_of(array)
        if output.region is not None:
            where = output.region
            shared(shared_memory).write(
                f"output '{output.name}'",
                where.region,
                where.offset,
                where.byte_size,
                codecs.tensor_bytes(array, datatype),
            )
        outputs.append(OutputTensor(output.name, datatype, array, output.binary, output.region))
    return InferResponse(model.name, str(model.version), request.id, outputs)


def _record_success(model: ModelVersion, total_ns: int, timing: RequestTiming) -> None:
    model.stats.record_success(total_ns, timing)
    model.histograms.observe_request(total_ns, timing.queue_ns, timing.batch_items)
    compute_ns = timing.compute_input_ns + timing.compute_infer_ns + timing.compute_output_ns
    request_context.note_timing(timing.queue_ns, compute_ns, timing.batch_items)


class DataPlane:
    def __init__(
        self,
        manager: ModelCatalog,
        limits: RequestLimits = UNLIMITED,
        cache: ResponseCache | None = None,
        shared_memory: SharedMemory | None = None,
        regions: RegionRegistry | None = None,
    ) -> None:
        self.manager = manager
        self.limits = limits
        self.cache = cache
        self.shared_memory = shared_memory
        """Where regions are mapped for reading inputs and writing outputs (None: off)."""
        self.regions = regions
        """Where they are registered (with the engine, in a split server's front end)."""
        self._uncached: set[str] = set()
        """Models that ask for the response cache on a server without one (told once)."""

    async def infer(self, request: InferRequest, deadline_s: float | None = None) -> InferResponse:
        """Run one request. `deadline_s`: seconds the caller still waits (its deadline)."""
        model = self.manager.get(request.model, request.version)
        request_context.note_model(model.name, model.version)
        loop = generation.decode_loop(model)
        if loop is not None:
            return await generation.answer_once(model, loop, request, self.limits, deadline_s)
        started = time.perf_counter_ns()
        try:
            response, timing = await self._infer(model, request, deadline_s)
        except BaseException:
            model.stats.record_failure(time.perf_counter_ns() - started)
            raise
        if isinstance(timing, RequestTiming):
            _record_success(model, time.perf_counter_ns() - started, timing)
        else:  # answered from the response cache: the lookup's time
            model.stats.record_cache_hit(time.perf_counter_ns() - started, timing)
        return response

    def decoupled(self, model_name: str, version: str) -> bool:
        """Whether the model may answer a request more than once (False when it is unknown:
        the request then fails as any other would)."""
        try:
            model = self.manager.get(model_name, version)
        except ServingError:
            return False
        return model.config.model_transaction_policy.decoupled

    async def stream(
        self, request: InferRequest, deadline_s: float | None = None, many: bool = True
    ) -> AsyncGenerator[InferResponse, None]:
        """The responses to one request: a text generator's tokens as they come (when the
        request asks to stream and `many`, the call can carry several), else the one answer."""
        model = self.manager.get(request.model, request.version)
        loop = generation.decode_loop(model)
        if loop is None:
            yield await self.infer(request, deadline_s)
            return
        request_context.note_model(model.name, model.version)
        async with contextlib.aclosing(
            generation.responses(model, loop, request, self.limits, many, deadline_s)
        ) as responses:
            async for response in responses:
                yield response

    def _cache_for(self, model: ModelVersion) -> ResponseCache | None:
        if not model.config.response_cache.enable or model.config.HasField("sequence_batching"):
            return None  # a sequence's answer depends on its state, not only on its inputs
        if self.cache is None and model.name not in self._uncached:
            self._uncached.add(model.name)
            log.warning(
                "model '%s' asks for the response cache, but this server keeps none "
                "(--response-cache-mb is 0): its requests all run",
                model.name,
            )
        return self.cache

    async def _infer(
        self, model: ModelVersion, request: InferRequest, deadline_s: float | None
    ) -> tuple[InferResponse, RequestTiming | int]:
        """The answer, and where its time went (or, from the cache, the lookup's ns)."""
        t0 = time.perf_counter_ns()
        feeds, batch = decode_inputs(model, request, self.limits, self.shared_memory)
        wanted = requested_outputs(model, request)
        _check_response_size(model, wanted, batch, self.limits.max_response_bytes)
        names = list(dict.fromkeys(output.name for output in wanted))
        priority = _int_parameter(request, "priority")
        timeout_us = _int_parameter(request, "timeout")
        sequence = sequence_step(request.parameters)
        cache = self._cache_for(model)
        if cache is not None:
            key = cache.key(model.name, model.version, feeds, names)
            kept = cache.get(key, model.scheduler)
            lookup_ns = time.perf_counter_ns() - t0
            if kept is not None:
                return _response(model, request, wanted, kept, self.shared_memory), lookup_ns
        t1 = time.perf_counter_ns()
        result = await model.scheduler.submit(
            feeds,
            batch,
            names,
            priority=priority,
            timeout_us=timeout_us,
            deadline_s=deadline_s,
            sequence=sequence,
        )
        t2 = time.perf_counter_ns()
        if cache is not None:
            cache.put(key, model.scheduler, {name: result.outputs[name] for name in names})
            model.stats.record_cache_miss(lookup_ns + time.perf_counter_ns() - t2)
        response = _response(model, request, wanted, result.outputs, self.shared_memory)
        return response, _timing(result, t1 - t0, time.perf_counter_ns() - t2)

    async def run_images(
        self,
        model: ModelVersion,
        items: int,
        prepare: Callable[[], Awaitable[tuple[np.ndarray, T]]],
        input_name: str,
        output_names: list[str],
        finish: Callable[[dict[str, np.ndarray], T], R],
        deadline_s: float | None = None,
    ) -> R:
        """The Vision API's path through the same scheduler (so its requests batch with tensor
        requests to the model): `prepare` decodes and resizes on a worker thread, returning the
        uint8 batch and context for `finish`, which post-processes on a worker thread.
        More images than max_batch_size go as several jobs; `items` (the image count) is
        checked against the model's queue before any image is decoded."""
        request_context.note_model(model.name, model.version)
        started = time.perf_counter_ns()
        try:
            with model.scheduler.reserve(items, deadline_s):
                batch, context = await prepare()
            t1 = time.perf_counter_ns()
            limit = max(model.max_batch_size, 1)
            chunks = [batch[i : i + limit] for i in range(0, len(batch), limit)]
            results = await asyncio.gather(
                *(
                    model.scheduler.submit(
                        {input_name: chunk}, len(chunk), output_names, deadline_s=deadline_s
                    )
                    for chunk in chunks
                )
            )
            t2 = time.perf_counter_ns()
            outputs = {
                name: np.concatenate([r.outputs[name] for r in results])
                if len(results) > 1
                else results[0].outputs[name]
                for name in output_names
            }
            answer = await asyncio.to_thread(finish, outputs, context)
        except BaseException:
            model.stats.record_failure(time.perf_counter_ns() - started)
            raise
        t3 = time.perf_counter_ns()
        _record_success(model, t3 - started, _timing(results[0], t1 - started, t3 - t2))
        return answer
