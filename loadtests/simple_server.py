"""The simplest server one writes in an afternoon to serve an ONNX model over Triton's gRPC
protocol: grpc.aio with tritonclient's generated stubs, one ONNX Runtime session with its
defaults, and `session.run` inside the handler. No queue, no batching, no checks, no metrics.
deepserve at one request at a time is measured against it side by side (loadtests/bench.py).

    python -m loadtests.simple_server --model models/mnist/1/model.onnx --port 8102
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from deepserve.server.event_loop import run

from .local_server import RunningServer, module_server

_NUMPY = {"UINT8": np.uint8, "FP32": np.float32, "INT64": np.int64, "INT32": np.int32}
_TRITON = {np.dtype(v).str: k for k, v in _NUMPY.items()}


class SimpleInference(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, model: Path) -> None:
        self._session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        self._output_names = [o.name for o in self._session.get_outputs()]

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        feeds = {
            tensor.name: np.frombuffer(raw, _NUMPY[tensor.datatype]).reshape(tensor.shape)
            for tensor, raw in zip(request.inputs, request.raw_input_contents, strict=True)
        }
        outputs = self._session.run(self._output_names, feeds)
        response = pb.ModelInferResponse(model_name=request.model_name, model_version="1")
        for name, value in zip(self._output_names, outputs, strict=True):
            response.outputs.add(name=name, datatype=_TRITON[value.dtype.str], shape=value.shape)
            response.raw_output_contents.append(value.tobytes())
        return response

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)


async def serve(model: Path, host: str, port: int) -> None:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20)])
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(SimpleInference(model), server)
    server.add_insecure_port(f"{host}:{port}")
    await server.start()
    await server.wait_for_termination()


def simple_server(
    model: Path, timeout: float = 60
) -> contextlib.AbstractContextManager[RunningServer]:
    """The simple server on `model` in a subprocess on a free port."""
    return module_server("loadtests.simple_server", "--model", str(model), timeout=timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="an ONNX file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    run(serve(args.model, args.host, args.port), "auto")  # the same event loop as deepserve
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
