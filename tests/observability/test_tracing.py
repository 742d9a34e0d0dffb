"""OpenTelemetry spans, read with an in-memory exporter from a real server in this process:
a request's spans nest under the caller's trace, and a batch's span links every request in it."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from deepserve import Client
from deepserve.server.batching.scheduler import Scheduler
from deepserve.server.observability import tracing

from ..in_process import InProcessServer, in_process_server
from ..onnx_models import int_negate, slow_matmul, write_model

SLOW_CONFIG = """
max_batch_size: 256
dynamic_batching { }
instance_group [ { count: 1 kind: KIND_CPU } ]
parameters { key: "intra_op_thread_count" value { string_value: "1" } }
"""
NEGATE_TWICE = """
platform: "ensemble"
max_batch_size: 8
input [ { name: "x" data_type: TYPE_INT32 dims: [ 3 ] } ]
output [ { name: "y" data_type: TYPE_INT32 dims: [ 3 ] } ]
ensemble_scheduling {
  step { model_name: "negate" model_version: -1
         input_map { key: "x" value: "x" } output_map { key: "y" value: "negated" } }
  step { model_name: "negate" model_version: -1
         input_map { key: "x" value: "negated" } output_map { key: "y" value: "y" } }
}
"""
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, InMemorySpanExporter]]:
    repo = tmp_path_factory.mktemp("traced") / "models"
    write_model(repo, "negate", int_negate())
    write_model(repo, "slow", slow_matmul(), SLOW_CONFIG)
    (repo / "negate_twice" / "1").mkdir(parents=True)
    (repo / "negate_twice" / "config.pbtxt").write_text(NEGATE_TWICE)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.configure(provider)
    try:
        with in_process_server(repo, tracing=True) as running:
            yield running, f"127.0.0.1:{running.server.port}", exporter
    finally:
        tracing.shutdown()


def _negate(stub: pb_grpc.GRPCInferenceServiceStub, metadata=()) -> None:
    request = pb.ModelInferRequest(model_name="negate")
    request.inputs.add(name="x", datatype="INT32", shape=[1, 3])
    request.raw_input_contents.append(np.ones((1, 3), np.int32).tobytes())
    stub.ModelInfer(request, metadata=metadata)


def _slow(stub: pb_grpc.GRPCInferenceServiceStub, items: int, request_id: str) -> None:
    request = pb.ModelInferRequest(model_name="slow")
    request.inputs.add(name="x", datatype="FP32", shape=[items, 512])
    request.raw_input_contents.append(np.ones((items, 512), np.float32).tobytes())
    stub.ModelInfer(request, metadata=(("x-request-id", request_id),))


def test_one_requests_spans_nest_under_the_callers_trace(traced) -> None:
    _, url, exporter = traced
    exporter.clear()
    traceparent = f"00-{TRACE_ID}-{PARENT_ID}-01"
    with grpc.insecure_channel(url) as channel:
        _negate(pb_grpc.GRPCInferenceServiceStub(channel), (("traceparent", traceparent),))
    spans = exporter.get_finished_spans()
    server = next(s for s in spans if s.name == "ModelInfer")
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert format(server.parent.span_id, "016x") == PARENT_ID
    assert server.kind == trace.SpanKind.SERVER
    assert server.attributes["deepserve.model"] == "negate"
    assert server.attributes["rpc.grpc.status_code"] == "OK"
    children = {s.name: s for s in spans if s.parent and s.parent.span_id == server.context.span_id}
    assert set(children) == {"queue", "compute"}
    assert server.start_time <= children["queue"].start_time <= children["queue"].end_time
    assert children["queue"].end_time <= children["compute"].start_time
    assert children["compute"].end_time <= server.end_time
    batch = next(s for s in spans if s.name == "batch")
    assert [link.context.span_id for link in batch.links] == [server.context.span_id]
    assert children["compute"].links[0].context.span_id == batch.context.span_id
    run = next(s for s in spans if s.name == "onnxruntime.run")
    assert run.parent.span_id == batch.context.span_id
    assert batch.start_time <= run.start_time <= run.end_time <= batch.end_time


def test_a_batch_of_eight_links_eight_requests(traced) -> None:
    running, url, exporter = traced
    exporter.clear()
    scheduler = running.server.models.get("slow").scheduler
    with grpc.insecure_channel(url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        grpc.channel_ready_future(channel).result(timeout=10)
        # The model's one instance is held so the eight queue together, however slowly they
        # arrive; then it is given back and the batcher takes them as one batch.
        with ThreadPoolExecutor(8) as pool:
            with _instance_held(running, scheduler):
                eight = [pool.submit(_slow, stub, 1, f"small-{i}") for i in range(8)]
                deadline = time.monotonic() + 30
                while len(scheduler.queue) < 8:
                    assert time.monotonic() < deadline, f"{len(scheduler.queue)} of 8 queued"
                    time.sleep(0.01)
            for future in eight:
                future.result(timeout=30)
    spans = exporter.get_finished_spans()
    requests = {
        s.context.span_id: s.attributes["deepserve.request_id"]
        for s in spans
        if s.name == "ModelInfer"
    }
    batches = [s for s in spans if s.name == "batch"]
    linked = [{requests[link.context.span_id] for link in b.links} for b in batches]
    assert linked == [{f"small-{i}" for i in range(8)}], linked
    assert batches[0].attributes["deepserve.batch_size"] == 8
    assert batches[0].attributes["deepserve.requests"] == 8


@contextlib.contextmanager
def _instance_held(running: InProcessServer, scheduler: Scheduler) -> Iterator[None]:
    """Takes the scheduler's one idle instance away (on the server's loop) and gives it back."""

    async def take() -> Any:
        return scheduler._idle.pop()

    async def give_back(session: Any) -> None:
        scheduler._idle.append(session)
        assert scheduler._wakeup is not None
        scheduler._wakeup.set()

    session = running.run(take())
    try:
        yield
    finally:
        running.run(give_back(session))


def test_the_sdk_sends_the_applications_trace_context(traced) -> None:
    _, url, exporter = traced
    exporter.clear()
    app_provider = TracerProvider()
    tracer = app_provider.get_tracer("app")
    with tracer.start_as_current_span("checkout") as app_span, Client(url) as client:
        client.infer("negate", {"x": np.ones((1, 3), np.int32)})
    server = next(s for s in exporter.get_finished_spans() if s.name == "ModelInfer")
    assert server.context.trace_id == app_span.get_span_context().trace_id
    assert server.parent.span_id == app_span.get_span_context().span_id


def test_an_ensemble_has_a_span_per_step_with_its_phases_under_it(traced) -> None:
    _, url, exporter = traced
    exporter.clear()
    request = pb.ModelInferRequest(model_name="negate_twice")
    request.inputs.add(name="x", datatype="INT32", shape=[1, 3])
    request.raw_input_contents.append(np.array([[1, 2, 3]], np.int32).tobytes())
    with grpc.insecure_channel(url) as channel:
        answer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
    assert np.frombuffer(answer.raw_output_contents[0], np.int32).tolist() == [1, 2, 3]
    spans = exporter.get_finished_spans()
    server = next(s for s in spans if s.name == "ModelInfer")
    assert server.attributes["deepserve.model"] == "negate_twice"
    steps = sorted(
        (s for s in spans if s.parent and s.parent.span_id == server.context.span_id),
        key=lambda s: s.start_time,
    )
    assert [s.name for s in steps] == ["step 1 (model 'negate')", "step 2 (model 'negate')"]
    assert steps[0].end_time <= steps[1].start_time  # the second reads the first's output
    for step in steps:
        under = {s.name for s in spans if s.parent and s.parent.span_id == step.context.span_id}
        assert under == {"queue", "compute"}, step.name
