"""The gRPC floor: a Python gRPC server with no deepserve code in it, on the same event loop,
that parses each ModelInfer request and answers a fixed response. What a load client measures
against it is what the client, the loopback and grpcio cost alone; the no-op model through
deepserve minus this is deepserve's own time per request.

    python -m loadtests.grpc_floor --port 8101      # serve until stopped
"""

from __future__ import annotations

import argparse
import contextlib

import grpc
from tritonclient.grpc import service_pb2 as pb

from deepserve.server.event_loop import run

from .local_server import RunningServer, module_server

SERVICE = "inference.GRPCInferenceService"


def _fixed_answer() -> bytes:
    response = pb.ModelInferResponse(model_name="floor", model_version="1")
    response.outputs.add(name="output", datatype="FP32", shape=[1, 10])
    response.raw_output_contents.append(bytes(40))
    return response.SerializeToString()


async def serve(host: str, port: int) -> None:
    answer = _fixed_answer()
    live = pb.ServerLiveResponse(live=True).SerializeToString()

    async def model_infer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        pb.ModelInferRequest.FromString(request)  # a server reads what it is sent
        return answer

    async def server_live(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return live

    handlers = {
        "ModelInfer": grpc.unary_unary_rpc_method_handler(model_infer),
        "ServerLive": grpc.unary_unary_rpc_method_handler(server_live),
    }
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_insecure_port(f"{host}:{port}")
    await server.start()
    await server.wait_for_termination()


def floor_server(timeout: float = 30) -> contextlib.AbstractContextManager[RunningServer]:
    """The floor server in a subprocess on a free port."""
    return module_server("loadtests.grpc_floor", timeout=timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    run(serve(args.host, args.port), "auto")  # the server's event loop choice
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
