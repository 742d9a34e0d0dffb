"""OpenTelemetry traces, off by default (`--tracing`).

A span per request, from the transport: its W3C trace context comes from the incoming metadata
(`traceparent`), so a client's trace continues in the server. Under it, `queue` (waiting for a
batch) and `compute` (its share of the batch run, linked to the batch); for an ensemble, a span
per step, with that step's `queue` and `compute` under it. Each batch is a span of
its own, `batch`, that links every request span in it, with the ONNX Runtime run under it.
Spans about the scheduler are written after the fact with the measured times, so the hot path
does no tracing work when tracing is off, and little when it is on.

The exporter is OTLP, configured by the standard variables (OTEL_EXPORTER_OTLP_ENDPOINT,
OTEL_EXPORTER_OTLP_PROTOCOL grpc or http/protobuf, OTEL_SERVICE_NAME, ...); OTEL_TRACES_EXPORTER
=console prints spans instead.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)

_tracer: Any = None


def _wall_offset_ns() -> int:
    """perf_counter ns + this = wall-clock ns, for spans written after the fact. Taken when
    they are written, not once at start (the wall clock may have been stepped since, and the
    request's own span started on the wall clock of its moment); once for all the spans
    written together, so their ends and starts meet exactly."""
    return time.time_ns() - time.perf_counter_ns()


def enabled() -> bool:
    return _tracer is not None


def configure(provider: Any = None, sample_ratio: float = 1.0) -> None:
    """Turn tracing on with `provider`, or with one exporting as the OTEL_* variables say."""
    global _tracer
    from opentelemetry import trace

    if provider is None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        service = os.environ.get("OTEL_SERVICE_NAME", "deepserve")
        resource = Resource.create({"service.name": service})
        provider = TracerProvider(
            resource=resource, sampler=ParentBased(TraceIdRatioBased(sample_ratio))
        )
        provider.add_span_processor(BatchSpanProcessor(_exporter()))
        trace.set_tracer_provider(provider)
        log.info("tracing on: sampling ratio %s, exporter %s", sample_ratio, _exporter_name())
    _tracer = provider.get_tracer("deepserve")


def shutdown() -> None:
    global _tracer
    if _tracer is None:
        return
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    if hasattr(provider, "shutdown"):
        provider.shutdown()
    _tracer = None


def _exporter_name() -> str:
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp") == "console":
        return "console"
    return "otlp/" + os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")


def _exporter() -> Any:
    name = _exporter_name()
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name == "otlp/http/protobuf":
        from opentelemetry.exporter.otlp.proto.http import trace_exporter as over_http

        return over_http.OTLPSpanExporter()
    from opentelemetry.exporter.otlp.proto.grpc import trace_exporter as over_grpc

    return over_grpc.OTLPSpanExporter()


# ---- spans ---------------------------------------------------------------------------------


def start_request(rpc: str, metadata: Any, request_id: str, transport: str = "grpc") -> Any:
    """The request's server span, continuing the caller's trace when it sent one; `transport`
    ("grpc" or "http") names the protocol it came over."""
    if _tracer is None:
        return None
    from opentelemetry import propagate, trace

    carrier = {key: value for key, value in metadata or () if isinstance(value, str)}
    span = _tracer.start_span(
        rpc,
        context=propagate.extract(carrier),
        kind=trace.SpanKind.SERVER,
        attributes={
            "rpc.system": transport,
            "rpc.method": rpc,
            "network.protocol.name": transport,
            "deepserve.request_id": request_id,
        },
    )
    return span


def end_request(span: Any, code: str, model: str, version: str) -> None:
    if span is None:
        return
    from opentelemetry.trace import Status, StatusCode

    if (getattr(span, "attributes", None) or {}).get("rpc.system", "grpc") == "grpc":
        span.set_attribute("rpc.grpc.status_code", code)
    else:
        span.set_attribute("deepserve.status", code)
    if model:
        span.set_attribute("deepserve.model", model)
        span.set_attribute("deepserve.model_version", version)
    if code != "OK":
        span.set_status(Status(StatusCode.ERROR, code))
    span.end()


def start_step(parent: Any, name: str, model: str) -> Any:
    """A span under `parent` (a request's span) for one step of an ensemble; None when off."""
    if _tracer is None or parent is None:
        return None
    from opentelemetry import trace

    return _tracer.start_span(
        name, context=trace.set_span_in_context(parent), attributes={"deepserve.model": model}
    )


def record_batch(
    model: str,
    request_spans: Sequence[Any],
    items: int,
    dispatched_ns: int,
    run_started_ns: int,
    run_finished_ns: int,
    finished_ns: int,
) -> Any:
    """The batch's span, linking every request span in it, with the ONNX Runtime run under it.
    Returns its context, for the requests' compute spans to link back."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    links = [trace.Link(span.get_span_context()) for span in request_spans if span is not None]
    offset = _wall_offset_ns()
    batch = _tracer.start_span(
        "batch",
        context=trace.set_span_in_context(trace.INVALID_SPAN),  # a root: it serves many traces
        links=links,
        start_time=dispatched_ns + offset,
        attributes={
            "deepserve.model": model,
            "deepserve.batch_size": items,
            "deepserve.requests": len(request_spans),
        },
    )
    run = _tracer.start_span(
        "onnxruntime.run",
        context=trace.set_span_in_context(batch),
        start_time=run_started_ns + offset,
    )
    run.end(end_time=run_finished_ns + offset)
    batch.end(end_time=finished_ns + offset)
    return batch.get_span_context()


def record_request_phases(
    span: Any, enqueued_ns: int, dispatched_ns: int, finished_ns: int, batch: Any
) -> None:
    """`queue` and `compute` spans under the request's span, from measured times."""
    if span is None or _tracer is None:
        return
    from opentelemetry import trace

    parent = trace.set_span_in_context(span)
    offset = _wall_offset_ns()
    queue = _tracer.start_span("queue", context=parent, start_time=enqueued_ns + offset)
    queue.end(end_time=dispatched_ns + offset)
    links = [trace.Link(batch)] if batch is not None else []
    compute = _tracer.start_span(
        "compute", context=parent, links=links, start_time=dispatched_ns + offset
    )
    compute.end(end_time=finished_ns + offset)
