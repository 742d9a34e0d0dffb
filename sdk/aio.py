"""The asyncio client: the same methods as Client, awaitable."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from . import _calls, _convert
from ._calls import Call
from ._connection import ConnectionOptions, RoundRobin, backoff_seconds
from ._convert import ImageLike
from .errors import RETRYABLE, DeepserveError, from_rpc_error
from .results import Classification, Detection, ModelInfo, Segmentation
from .v1 import vision_pb2_grpc as vpb_grpc


class AsyncClient:
    """Like :class:`deepserve.Client`, for asyncio code.

    >>> async with AsyncClient("localhost:8001") as client:
    ...     labels = await asyncio.gather(*(client.classify(p, model="mnist") for p in paths))
    """

    def __init__(
        self,
        target: str | Sequence[str] = "localhost:8001",
        *,
        timeout: float | None = 30.0,
        retries: int = 3,
        tls: bool = False,
        root_certificates: bytes | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
        max_message_mb: int = 64,
    ) -> None:
        self._options = ConnectionOptions.build(
            target, timeout, retries, tls, root_certificates, credentials, token, max_message_mb
        )
        self._channels = [self._open(t) for t in self._options.targets]
        self._stubs = {
            _calls.VISION: [vpb_grpc.VisionStub(c) for c in self._channels],
            _calls.TENSORS: [pb_grpc.GRPCInferenceServiceStub(c) for c in self._channels],
        }
        self._rotation = RoundRobin(len(self._channels))

    def _open(self, target: str) -> grpc.aio.Channel:
        options = self._options.channel_options
        if self._options.credentials is not None:
            return grpc.aio.secure_channel(target, self._options.credentials, options=options)
        return grpc.aio.insecure_channel(target, options=options)

    async def _run(self, call: Call) -> Any:
        if call.task and not call.request.model:
            call.request.model = _calls.pick_model(call.task, await self.models())
        stubs = self._stubs[call.service]
        last: grpc.RpcError | None = None
        for attempt, index in enumerate(self._rotation.attempts(self._options.retries)):
            try:
                response = await getattr(stubs[index], call.method)(
                    call.request, timeout=self._options.timeout, metadata=self._options.metadata
                )
                return call.parse(response)
            except grpc.RpcError as error:
                last = error
                if error.code() not in RETRYABLE or attempt == self._options.retries:
                    break
                if len(stubs) == 1 or error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    await asyncio.sleep(backoff_seconds(attempt))
        assert last is not None
        raise from_rpc_error(last) from None

    async def classify(
        self,
        images: ImageLike | Sequence[ImageLike],
        *,
        model: str | None = None,
        top_k: int = 1,
        version: str = "",
    ) -> Classification | list[Classification]:
        return await self._run(_calls.classify(images, model, top_k, version))

    async def detect(
        self,
        images: ImageLike | Sequence[ImageLike],
        *,
        model: str | None = None,
        score_threshold: float | None = None,
        max_detections: int | None = None,
        version: str = "",
    ) -> list[Detection] | list[list[Detection]]:
        return await self._run(
            _calls.detect(images, model, score_threshold, max_detections, version)
        )

    async def segment(
        self,
        images: ImageLike | Sequence[ImageLike],
        *,
        model: str | None = None,
        png: bool = False,
        version: str = "",
    ) -> Segmentation | list[Segmentation]:
        return await self._run(_calls.segment(images, model, png, version))

    async def infer(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[str] | None = None,
        *,
        version: str = "",
    ) -> dict[str, np.ndarray]:
        return await self._run(_calls.infer(model, inputs, outputs, version))

    async def models(self) -> list[ModelInfo]:
        return await self._run(_calls.list_models())

    async def model_info(self, name: str) -> ModelInfo:
        summary = next((m for m in await self.models() if m.name == name), None)
        if summary is None:
            raise DeepserveError(f"the server has no model '{name}'")
        return _convert.with_tensors(summary, await self._run(_calls.model_metadata(name)))

    async def ready(self) -> bool:
        try:
            return await self._run(_calls.server_ready())
        except DeepserveError:
            return False

    async def live(self) -> bool:
        try:
            return await self._run(_calls.server_live())
        except DeepserveError:
            return False

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
