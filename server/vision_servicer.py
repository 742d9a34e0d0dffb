"""The task API transport (`deepserve.v1.Vision`): images in; labels, boxes, masks out."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..v1 import vision_pb2 as vpb
from ..v1 import vision_pb2_grpc as vpb_grpc
from . import imaging
from .dataplane import DataPlane
from .errors import InvalidInput, LimitExceeded
from .grpc_calls import observed
from .manager import ModelManager
from .model import ModelVersion
from .observe import Observer
from .settings import ServerSettings
from .task_classify import classifications
from .task_config import TaskNotSupported, TaskSpec, task_spec
from .task_detect import OUTPUTS as DETECTION_OUTPUTS
from .task_detect import detections
from .task_segment import masks


class VisionServicer(vpb_grpc.VisionServicer):
    def __init__(
        self,
        dataplane: DataPlane,
        manager: ModelManager,
        settings: ServerSettings,
        observer: Observer,
    ) -> None:
        self._dataplane = dataplane
        self._manager = manager
        self._observer = observer
        self._limits = imaging.ImageLimits(
            max_pixels=settings.max_image_pixels,
            max_request_bytes=settings.max_request_image_bytes,
            formats=tuple(f.upper() for f in settings.image_formats),
        )
        # Room for a response's masks: the message limit less a margin for the other fields.
        self._response_budget = settings.max_message_bytes - 64 * 1024

    def _task(self, request, task: str) -> tuple[ModelVersion, TaskSpec]:
        """The model a task request names, checked to do `task`, and the request to hold images."""
        model = self._manager.get(request.model, request.model_version)
        spec = task_spec(model, task)
        if not request.images:
            raise InvalidInput("the request has no images")
        return model, spec

    async def _run(
        self,
        model: ModelVersion,
        spec: TaskSpec,
        request,
        outputs: list[str],
        finish,
        context,
        check_sizes: Callable[[list[tuple[int, int]]], None] | None = None,
    ) -> list:
        """Decode and resize the request's images, batch them through the model, post-process.
        `check_sizes` sees the images' sizes from their headers before anything is decoded."""
        images = list(request.images)
        limits = self._limits

        def prepare() -> tuple[np.ndarray, list[tuple[int, int]]]:
            opened = imaging.open_all(images, limits)
            if check_sizes is not None:
                check_sizes([(picture.height, picture.width) for picture in opened])
            return imaging.prepare(opened, spec.height, spec.width, spec.channels)

        return await self._dataplane.run_images(
            model,
            prepare,
            spec.input_name,
            outputs,
            finish,
            context.time_remaining(),
        )

    @observed
    async def Classify(self, request: vpb.ClassifyRequest, context) -> vpb.ClassifyResponse:
        model, spec = self._task(request, "classification")
        output = next(iter(model.outputs))
        top_k = request.top_k if request.HasField("top_k") else 1
        are_logits = spec.parameters.get("output_kind", "logits") == "logits"
        labels = model.labels.get(output, [])

        def finish(outputs: dict[str, np.ndarray], _sizes) -> list[vpb.Classification]:
            return classifications(outputs[output], labels, top_k, are_logits)

        results = await self._run(model, spec, request, [output], finish, context)
        return vpb.ClassifyResponse(
            model=model.name, model_version=str(model.version), results=results
        )

    @observed
    async def Detect(self, request: vpb.DetectRequest, context) -> vpb.DetectResponse:
        model, spec = self._task(request, "detection")
        missing = [o for o in DETECTION_OUTPUTS if o not in model.outputs]
        if missing:
            raise TaskNotSupported(f"detection model '{model.name}' lacks outputs {missing}")
        threshold = (
            request.score_threshold
            if request.HasField("score_threshold")
            else spec.number("score_threshold", 0.5)
        )
        limit = request.max_detections if request.HasField("max_detections") else None
        labels = model.labels.get("classes", [])

        def finish(outputs, sizes) -> list[vpb.Detections]:
            return detections(outputs, sizes, (spec.height, spec.width), labels, threshold, limit)

        results = await self._run(model, spec, request, list(DETECTION_OUTPUTS), finish, context)
        return vpb.DetectResponse(
            model=model.name, model_version=str(model.version), results=results
        )

    @observed
    async def Segment(self, request: vpb.SegmentRequest, context) -> vpb.SegmentResponse:
        model, spec = self._task(request, "segmentation")
        output = next(iter(model.outputs))
        labels = model.labels.get(output, [])

        encoding = request.mask_encoding
        budget = self._response_budget

        def check_sizes(sizes: list[tuple[int, int]]) -> None:
            # A raw mask is one byte a pixel: refuse now what could not be sent after the work.
            raw_bytes = sum(h * w for h, w in sizes)
            if encoding != vpb.MASK_ENCODING_PNG and raw_bytes > budget:
                raise LimitExceeded(
                    f"the raw masks of these images would take {raw_bytes} bytes, more than the "
                    f"response limit of {budget} bytes (max_message_mb); ask for "
                    "MASK_ENCODING_PNG, or send fewer or smaller images"
                )

        def finish(outputs, sizes) -> list[vpb.Mask]:
            results = masks(outputs[output], sizes, labels, encoding)
            encoded = sum(len(m.data) for m in results)
            if encoded > budget:
                raise LimitExceeded(
                    f"the PNG masks take {encoded} bytes, more than the response limit of "
                    f"{budget} bytes (max_message_mb); send fewer or smaller images"
                )
            return results

        results = await self._run(model, spec, request, [output], finish, context, check_sizes)
        return vpb.SegmentResponse(
            model=model.name, model_version=str(model.version), results=results
        )

    @observed
    async def ListModels(self, request: vpb.ListModelsRequest, context) -> vpb.ListModelsResponse:
        summaries: dict[str, vpb.ModelSummary] = {}
        for row in self._manager.index():
            summary = summaries.setdefault(row.name, vpb.ModelSummary(name=row.name))
            if row.version:
                summary.versions.append(row.version)
            summary.ready = summary.ready or row.state == "READY"
        for name, summary in summaries.items():
            if not summary.ready:
                continue
            model = self._manager.get(name)
            params = {k: v.string_value for k, v in model.config.parameters.items()}
            summary.task = params.get("task", "")
            for key in ("image_height", "image_width", "image_channels"):
                if params.get(key, "").isdigit():
                    setattr(summary, key, int(params[key]))
            for labels in model.labels.values():
                summary.labels.extend(labels)
                break
        return vpb.ListModelsResponse(models=list(summaries.values()))
