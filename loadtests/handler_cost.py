"""Where deepserve's own time goes in one call, in process and without the transport: a real
server is started in this process, and its gRPC handler is called directly, one call at a
time with a pause between calls (as one client's round trip leaves the server idle), in
nested steps: ONNX Runtime's run of the model alone, then the protobuf request turned into
tensors, then the data plane (model lookup, tensor checks, scheduler, statistics, the answer's
tensors), then the whole handler (request id, drain check, byte budget, call log and metrics,
the protobuf answer). Each step's CPU per call on the event loop's thread, less the step
inside it, is what that stage costs. The simple server's handler (loadtests/simple_server.py)
on the same model and request is measured beside them.

    python -m loadtests.handler_cost --model mnist --variant noop
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as pb

from deepserve.server.app import Server
from deepserve.server.cli import add_serve_options, settings_from_args
from deepserve.server.grpc import convert
from deepserve.server.grpc.inference import InferenceServicer
from deepserve.server.protocol.codecs import numpy_dtype
from deepserve.server.runtime.sessions import CPU, ProviderChoice, create_session

from .models import bench_repository
from .simple_server import SimpleInference

PAUSE_S = 0.0005
"""Between calls: about one client's round trip on loopback, which leaves the loop idle."""
ROUNDS = 5


class CallContext:
    """What a handler asks of grpc.aio's context, answered as for a plain call."""

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def peer(self) -> str:
        return "ipv4:127.0.0.1:40000"

    def time_remaining(self) -> None:
        return None

    def set_trailing_metadata(self, metadata: Any) -> None:
        pass

    def set_code(self, code: Any) -> None:
        raise AssertionError(f"the call failed: {code}")

    def set_details(self, details: str) -> None:
        raise AssertionError(f"the call failed: {details}")


def one_request(config: mc.ModelConfig, model: str) -> pb.ModelInferRequest:
    """One item of zeros for each input, in raw_input_contents, as the benchmarks send it."""
    request = pb.ModelInferRequest(model_name=model)
    for tensor in config.input:
        datatype = mc.DataType.Name(tensor.data_type).removeprefix("TYPE_")
        shape = [1, *tensor.dims] if config.max_batch_size > 0 else list(tensor.dims)
        request.inputs.add(name=tensor.name, datatype=datatype, shape=shape)
        request.raw_input_contents.append(np.zeros(shape, numpy_dtype(datatype)).tobytes())
    return request


async def cpu_per_call(call: Callable[[], Awaitable[Any]], calls: int) -> float:
    """Microseconds of this thread's CPU a call, with a pause after each."""
    for _ in range(calls // 10):  # warm
        await call()
        time.sleep(PAUSE_S)
    spent = 0
    for _ in range(calls):
        started = time.thread_time_ns()
        await call()
        spent += time.thread_time_ns() - started
        time.sleep(PAUSE_S)
    return spent / calls / 1e3


async def wait_until_served(server: Server, model: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            server.models.get(model, "")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def measure(repository: Path, model: str, onnx_file: Path, calls: int) -> dict[str, float]:
    parser = argparse.ArgumentParser()
    add_serve_options(parser, os.environ)
    settings = settings_from_args(
        parser.parse_args(
            [
                *("--model-repository", str(repository), "--port", "0", "--http-port", "0"),
                *("--metrics-port", "0", "--log-level", "WARNING"),
            ]
        )
    )
    server = Server(settings)
    await server.start()
    try:
        await wait_until_served(server, model)
        config = server.models.get(model, "").config
        request = one_request(config, model)
        servicer = InferenceServicer(
            server.dataplane, server.control, server.observer, server._request_bytes
        )
        context = CallContext()
        # As the server makes its sessions (its threads spin only within a run).
        session = create_session(onnx_file, ProviderChoice([CPU], "the CPU"), 0)
        feeds = convert.infer_request(request)
        arrays = {
            t.name: np.frombuffer(t.raw or b"", numpy_dtype(t.datatype)).reshape(t.shape)
            for t in feeds.inputs
        }
        simple = SimpleInference(onnx_file)

        async def run_alone() -> None:
            session.run(None, arrays)

        async def converted() -> None:
            convert.infer_request(request)
            session.run(None, arrays)

        async def data_plane() -> None:
            await server.dataplane.infer(convert.infer_request(request), None)

        async def handler() -> None:
            await servicer.ModelInfer(request, context)

        async def simple_handler() -> None:
            await simple.ModelInfer(request, context)  # type: ignore[arg-type]

        steps = {
            "onnxruntime_run": run_alone,
            "run_and_conversion": converted,
            "data_plane": data_plane,
            "handler": handler,
            "simple_handler": simple_handler,
        }
        # Rounds of every step in turn, each step's median kept: the machine's drift over the
        # run falls on every step alike.
        rounds: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(ROUNDS):
            for name, step in steps.items():
                rounds[name].append(await cpu_per_call(step, calls // ROUNDS))
        return {name: float(np.median(values)) for name, values in rounds.items()}
    finally:
        await server.stop()


def stages(measured: dict[str, float]) -> dict[str, float]:
    """Each stage's own microseconds: a step less the step nested in it."""
    return {
        "ONNX Runtime run": measured["onnxruntime_run"],
        "protobuf request -> tensors": measured["run_and_conversion"] - measured["onnxruntime_run"],
        "data plane (lookup, checks, scheduler, statistics)": measured["data_plane"]
        - measured["run_and_conversion"],
        "call wrapper and protobuf answer": measured["handler"] - measured["data_plane"],
    }


def run(model: str, model_repository: Path, calls: int, variant: str) -> dict[str, Any]:
    """`variant`: "noop" (a no-op model of the model's sizes: deepserve's own cost stands out
    from the run's) or "batching" (the model itself)."""
    from deepserve.server.event_loop import run as run_loop

    with tempfile.TemporaryDirectory() as scratch:
        repository = Path(scratch)
        names = bench_repository(model_repository, model, repository, 64, 1, 0)
        served = names[variant]
        onnx_file = repository / served / "1" / "model.onnx"
        measured: dict[str, float] = {}

        async def main() -> None:
            measured.update(await measure(repository, served, onnx_file, calls))

        run_loop(main(), "auto")  # the server's own event loop
    return {
        "model": model,
        "served": served,
        "us_per_call": measured,
        "stages_us": stages(measured),
    }


def print_report(report: dict[str, Any]) -> None:
    measured = report["us_per_call"]
    print(f"  {report['served']}: deepserve's handler {measured['handler']:.0f} us CPU a call:")
    for stage, us in report["stages_us"].items():
        print(f"    {us:6.0f} us  {stage}")
    print("  " + ", ".join(f"{k} {v:.0f}" for k, v in measured.items()))
    print(f"  the simple server's handler {measured['simple_handler']:.0f} us", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mnist")
    parser.add_argument("--model-repository", type=Path, default=Path("models"))
    parser.add_argument("--calls", type=int, default=5000, help="per step, over all rounds")
    parser.add_argument(
        "--variant",
        choices=["noop", "batching"],
        default="noop",
        help="noop: a no-op model of the model's sizes, so deepserve's own cost stands out",
    )
    args = parser.parse_args(argv)
    print_report(run(args.model, args.model_repository, args.calls, args.variant))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
