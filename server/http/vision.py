"""The Vision API over HTTP: an image as the request body (or one or more `image` fields of a
multipart form) in, JSON out: one route per task of the task table, each taking its options
from the query and answering with the task's JSON (labels, boxes, masks).

    curl -F image=@docs/images/digit-7.png localhost:8000/v1/models/mnist/classify
    curl --data-binary @scene.png -H 'Content-Type: image/png' \\
        'localhost:8000/v1/models/ssd/detect?score_threshold=0.6'
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..core.auth import Scope
from ..core.vision import Vision
from ..observability import request_context
from ..protocol.errors import InvalidInput
from ..protocol.types import ImageSource
from ..tasks import TASKS, Task
from ..tasks.base import parse_query
from .calls import CallWrapper, Handler, json_response, read_body, refuse_declared_length

BASES = ("/v1/models/{model}", "/v1/models/{model}/versions/{version}")


async def _images(request: Request, limit: int) -> list[ImageSource]:
    """The request's images: multipart `image` fields, or the whole body."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        refuse_declared_length(request, limit)
        form = await request.form(max_files=64, max_fields=64, max_part_size=limit)
        try:
            files = form.getlist("image")
            if not files:
                raise InvalidInput("the form has no 'image' field (curl -F image=@photo.png)")
            images = []
            for upload in files:
                data = await upload.read() if hasattr(upload, "read") else str(upload).encode()
                images.append(ImageSource(encoded=data))
            return images
        finally:
            await form.close()
    body = await read_body(request, limit)
    if not body:
        raise InvalidInput("no image: send it as the body, or as a form field 'image'")
    return [ImageSource(encoded=body)]


class VisionRoutes:
    def __init__(self, vision: Vision, calls: CallWrapper, limit: int) -> None:
        self._vision = vision
        self._calls = calls
        self._limit = limit

    def _task_handler(self, task: type[Task]) -> Handler:
        async def handle(request: Request) -> Response:
            started = time.perf_counter()
            values = parse_query(request.query_params, task.query)
            options = task.options_from_query(values, self._vision.response_budget)
            images = await _images(request, self._limit)
            model, results = await self._vision.run(
                task.name, request.path_params["model"], request.path_params.get("version", ""),
                images, options,
            )  # fmt: skip
            record = request_context.current.get()
            answer = {
                "model": model.name,
                "model_version": str(model.version),
                "server_ms": round((time.perf_counter() - started) * 1000, 3),
                "batch_size": record.batch_items if record is not None else 0,
                "average_batch_size": round(model.stats.average_batch(), 3),
            }
            return json_response(answer | {"results": task.results_json(results, options)})

        return handle

    async def models(self, request: Request) -> Response:
        return json_response(
            {
                "models": [
                    {
                        "name": s.name,
                        "versions": s.versions,
                        "ready": s.ready,
                        "task": s.task,
                        "image_height": s.image_height,
                        "image_width": s.image_width,
                        "image_channels": s.image_channels,
                        "labels": list(s.labels),
                    }
                    for s in self._vision.models()
                ]
            }
        )

    def routes(self) -> list[Route]:
        scope = Scope.INFERENCE
        table = [
            Route(
                "/v1/models",
                self._calls.endpoint("ListModels", scope)(self.models),
                methods=["GET"],
            )
        ]
        handlers = {task.verb: self._task_handler(task) for task in TASKS.values()}
        for base in BASES:
            for task in TASKS.values():
                endpoint = self._calls.endpoint(task.rpc, scope)(handlers[task.verb])
                table.append(Route(f"{base}/{task.verb}", endpoint, methods=["POST"]))
        return table
