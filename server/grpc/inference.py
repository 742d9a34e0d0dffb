"""The Open Inference Protocol (KServe v2) gRPC transport: parse, call the data plane, encode,
map errors to status codes. It uses tritonclient's generated modules, so the protocol's proto
file is registered once per process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from ..core.control import Control
from ..core.dataplane import DataPlane
from ..core.shared_memory import OFF, RegionRegistry, SharedMemoryOff
from ..observability import request_context
from ..observability.observe import Observer
from . import convert as grpc_convert
from .admission import RequestBytes
from .calls import error_status, fail, observed, with_request_id

log = logging.getLogger(__name__)


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(
        self,
        dataplane: DataPlane,
        control: Control,
        observer: Observer,
        request_bytes: RequestBytes | None = None,
    ) -> None:
        self._dataplane = dataplane
        self._control = control
        self._observer = observer
        self._request_bytes = request_bytes  # read by `observed`

    # ---- health and metadata ---------------------------------------------------------------

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self._control.server_ready)

    async def ModelReady(self, request, context):
        return pb.ModelReadyResponse(ready=self._control.model_ready(request.name, request.version))

    async def ServerMetadata(self, request, context):
        server = self._control.server_metadata()
        return pb.ServerMetadataResponse(
            name=server.name, version=server.version, extensions=server.extensions
        )

    @observed
    async def ModelMetadata(self, request, context):
        return grpc_convert.metadata(self._control.model_metadata(request.name, request.version))

    @observed
    async def ModelConfig(self, request, context):
        return pb.ModelConfigResponse(
            config=self._control.model_config(request.name, request.version)
        )

    @observed
    async def ModelStatistics(self, request, context):
        views = await self._control.statistics(request.name, request.version)
        return pb.ModelStatisticsResponse(model_stats=[grpc_convert.statistics(v) for v in views])

    # ---- inference ------------------------------------------------------------------------

    @observed
    async def ModelInfer(self, request, context):
        answer = await self._dataplane.infer(
            grpc_convert.infer_request(request), context.time_remaining()
        )
        return grpc_convert.infer_response(answer)

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[pb.ModelInferRequest], context
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Requests run concurrently. Models that answer once answer in request order; a
        decoupled model's responses go out as they come. An error answers that one request
        (error_message) and the stream goes on; a client that goes away stops the work."""
        out: asyncio.Queue[pb.ModelStreamInferResponse | None] = asyncio.Queue()
        metadata = context.invocation_metadata()
        running: set[asyncio.Task[None]] = set()

        async def answer(
            request: pb.ModelInferRequest,
            turn: asyncio.Future[None] | None,
            done: asyncio.Future[None],
        ) -> None:
            """Puts the request's responses on `out`, after `turn` (the request before it
            whose answer must go first)."""
            request_id = request.id or request_context.request_id_from(())
            flag_final = _bool_parameter(request, grpc_convert.EMPTY_FINAL)
            with self._observer.call("ModelStreamInfer", request_id, metadata) as record:
                try:
                    await self._observer.refuse_if_draining()
                    responses = self._dataplane.stream(
                        grpc_convert.infer_request(request), context.time_remaining()
                    )
                    async with contextlib.aclosing(responses):
                        async for response in responses:
                            message = grpc_convert.stream_response(response, flag_final)
                            if turn is not None:
                                await turn
                                turn = None
                            if message is not None:
                                out.put_nowait(message)
                except Exception as exc:
                    status, text = error_status(exc)
                    record.code = status.name
                    echo = pb.ModelInferResponse(
                        model_name=request.model_name,
                        model_version=request.model_version,
                        id=request.id,
                    )
                    # the status a unary call would have had, for clients that map errors
                    echo.parameters["error_code"].string_param = status.name
                    if turn is not None:
                        await turn
                    out.put_nowait(
                        pb.ModelStreamInferResponse(
                            error_message=with_request_id(text, request_id), infer_response=echo
                        )
                    )
                finally:
                    if not done.done():
                        done.set_result(None)

        async def read() -> None:
            previous: asyncio.Future[None] | None = None  # the last request answered in order
            try:
                async for request in request_iterator:
                    done = asyncio.get_running_loop().create_future()
                    in_order = not self._dataplane.decoupled(
                        request.model_name, request.model_version
                    )
                    task = asyncio.create_task(
                        answer(request, previous if in_order else None, done)
                    )
                    running.add(task)
                    task.add_done_callback(running.discard)
                    if in_order:
                        previous = done
                while running:
                    await asyncio.wait(set(running))
            finally:
                out.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (message := await out.get()) is not None:
                yield message
        finally:
            reader.cancel()
            for task in list(running):
                task.cancel()

    # ---- repository -----------------------------------------------------------------------

    @observed
    async def RepositoryIndex(self, request, context):
        rows = await self._control.index(request.ready)
        return pb.RepositoryIndexResponse(models=[grpc_convert.index_entry(r) for r in rows])

    @observed
    async def RepositoryModelLoad(self, request, context):
        config = (
            request.parameters["config"].string_param if "config" in request.parameters else None
        )
        await self._control.load(request.model_name, config)
        return pb.RepositoryModelLoadResponse()

    @observed
    async def RepositoryModelUnload(self, request, context):
        await self._control.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()

    # ---- system shared memory --------------------------------------------------------------

    def _regions(self) -> RegionRegistry:
        if self._dataplane.regions is None:
            raise SharedMemoryOff(OFF)
        return self._dataplane.regions

    @observed
    async def SystemSharedMemoryRegister(self, request, context):
        await self._regions().register(request.name, request.key, request.offset, request.byte_size)
        return pb.SystemSharedMemoryRegisterResponse()

    @observed
    async def SystemSharedMemoryStatus(self, request, context):
        response = pb.SystemSharedMemoryStatusResponse()
        for region in self._regions().status(request.name):
            status = response.regions[region.name]
            status.name, status.key = region.name, region.key
            status.offset, status.byte_size = region.offset, region.byte_size
        return response

    @observed
    async def SystemSharedMemoryUnregister(self, request, context):
        await self._regions().unregister(request.name)
        return pb.SystemSharedMemoryUnregisterResponse()

    # ---- not implemented: answer clearly rather than with the generated stub's text ---------

    async def _unimplemented(self, context, what: str):
        fail(
            context,
            grpc.StatusCode.UNIMPLEMENTED,
            f"deepserve does not implement {what}; send tensors in the request itself",
        )

    async def CudaSharedMemoryStatus(self, request, context):
        await self._unimplemented(context, "CUDA shared memory")

    async def CudaSharedMemoryRegister(self, request, context):
        await self._unimplemented(context, "CUDA shared memory")

    async def CudaSharedMemoryUnregister(self, request, context):
        await self._unimplemented(context, "CUDA shared memory")

    async def TraceSetting(self, request, context):
        fail(context, grpc.StatusCode.UNIMPLEMENTED, "deepserve does not implement tracing")

    async def LogSettings(self, request, context):
        fail(
            context,
            grpc.StatusCode.UNIMPLEMENTED,
            "deepserve does not implement log settings; set --log-level at start",
        )


def _bool_parameter(request: pb.ModelInferRequest, key: str) -> bool:
    return key in request.parameters and request.parameters[key].bool_param
