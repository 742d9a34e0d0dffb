"""The task API's gRPC transport (`deepserve.v1.Vision`): one method per task of the task
table, each taking its options from the request message and answering with the task's own
response message; ListModels beside them."""

from __future__ import annotations

import types
from typing import Any

from ...v1 import vision_pb2 as vpb
from ...v1 import vision_pb2_grpc as vpb_grpc
from ..core.vision import Vision
from ..observability.observe import Observer
from ..protocol.types import ImageSource
from ..tasks import TASKS, Task
from .admission import RequestBytes
from .calls import observed


def _images(request: Any) -> list[ImageSource]:
    images = []
    for image in request.images:
        if image.WhichOneof("source") == "raw":
            raw = image.raw
            images.append(ImageSource(None, raw.pixels, raw.height, raw.width, raw.channels))
        else:
            images.append(ImageSource(encoded=image.encoded))
    return images


def _task_method(task: type[Task]) -> Any:
    """The servicer method of one task (named as its RPC, which `observed` counts it by)."""

    async def method(servicer: VisionServicer, request: Any, context: Any) -> Any:
        vision = servicer._vision
        options = task.options_from_message(request, vision.response_budget)
        model, results = await vision.run(
            task.name,
            request.model,
            request.model_version,
            _images(request),
            options,
            context.time_remaining(),
        )
        return task.response_message(model.name, str(model.version), results, options)

    method.__name__ = method.__qualname__ = task.rpc
    return observed(method)


class VisionServicer(vpb_grpc.VisionServicer):
    def __init__(
        self, vision: Vision, observer: Observer, request_bytes: RequestBytes | None = None
    ) -> None:
        self._vision = vision
        self._observer = observer
        self._request_bytes = request_bytes  # read by `observed`
        # The generated registration looks each RPC up on the servicer.
        for task in TASKS.values():
            setattr(self, task.rpc, types.MethodType(_task_method(task), self))

    @observed
    async def ListModels(self, request: vpb.ListModelsRequest, context) -> vpb.ListModelsResponse:
        return vpb.ListModelsResponse(
            models=[
                vpb.ModelSummary(
                    name=s.name,
                    versions=s.versions,
                    task=s.task,
                    ready=s.ready,
                    image_height=s.image_height,
                    image_width=s.image_width,
                    image_channels=s.image_channels,
                    labels=list(s.labels),
                )
                for s in self._vision.models()
            ]
        )
