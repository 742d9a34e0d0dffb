"""The task API transport (`deepserve.v1.Vision`): images in; labels, boxes, masks out."""

from __future__ import annotations

import numpy as np

from ..v1 import vision_pb2 as vpb
from ..v1 import vision_pb2_grpc as vpb_grpc
from . import imaging
from .dataplane import DataPlane
from .errors import InvalidInput
from .manager import ModelManager
from .task_classify import classifications
from .task_config import TaskNotSupported, TaskSpec, task_spec
from .task_detect import OUTPUTS as DETECTION_OUTPUTS
from .task_detect import detections
from .task_segment import masks
from .v2_servicer import mapped


def _check_images(request) -> None:
    if not request.images:
        raise InvalidInput("the request has no images")


def _labels(model, output: str) -> list[str]:
    return model.labels.get(output, [])


class VisionServicer(vpb_grpc.VisionServicer):
    def __init__(self, dataplane: DataPlane, manager: ModelManager) -> None:
        self._dataplane = dataplane
        self._manager = manager

    def _preparer(self, request, spec: TaskSpec):
        return lambda: imaging.prepare(list(request.images), spec.height, spec.width, spec.channels)

    @mapped
    async def Classify(self, request: vpb.ClassifyRequest, context) -> vpb.ClassifyResponse:
        model = self._manager.get(request.model, request.model_version)
        spec = task_spec(model, "classification")
        _check_images(request)
        (output,) = list(model.outputs)[:1]
        top_k = request.top_k if request.HasField("top_k") else 1
        are_logits = spec.parameters.get("output_kind", "logits") == "logits"

        def finish(outputs: dict[str, np.ndarray], _sizes) -> list[vpb.Classification]:
            return classifications(outputs[output], _labels(model, output), top_k, are_logits)

        results = await self._dataplane.run_images(
            model,
            self._preparer(request, spec),
            spec.input_name,
            [output],
            finish,
            context.time_remaining(),
        )
        return vpb.ClassifyResponse(
            model=model.name, model_version=str(model.version), results=results
        )

    @mapped
    async def Detect(self, request: vpb.DetectRequest, context) -> vpb.DetectResponse:
        model = self._manager.get(request.model, request.model_version)
        spec = task_spec(model, "detection")
        _check_images(request)
        missing = [o for o in DETECTION_OUTPUTS if o not in model.outputs]
        if missing:
            raise TaskNotSupported(f"detection model '{model.name}' lacks outputs {missing}")
        threshold = (
            request.score_threshold
            if request.HasField("score_threshold")
            else spec.number("score_threshold", 0.5)
        )
        limit = request.max_detections if request.HasField("max_detections") else None
        labels = _labels(model, "classes")

        def finish(outputs, sizes) -> list[vpb.Detections]:
            return detections(outputs, sizes, (spec.height, spec.width), labels, threshold, limit)

        results = await self._dataplane.run_images(
            model,
            self._preparer(request, spec),
            spec.input_name,
            list(DETECTION_OUTPUTS),
            finish,
            context.time_remaining(),
        )
        return vpb.DetectResponse(
            model=model.name, model_version=str(model.version), results=results
        )

    @mapped
    async def Segment(self, request: vpb.SegmentRequest, context) -> vpb.SegmentResponse:
        model = self._manager.get(request.model, request.model_version)
        spec = task_spec(model, "segmentation")
        _check_images(request)
        (output,) = list(model.outputs)[:1]
        labels = _labels(model, output)

        def finish(outputs, sizes) -> list[vpb.Mask]:
            return masks(outputs[output], sizes, labels, request.mask_encoding)

        results = await self._dataplane.run_images(
            model,
            self._preparer(request, spec),
            spec.input_name,
            [output],
            finish,
            context.time_remaining(),
        )
        return vpb.SegmentResponse(
            model=model.name, model_version=str(model.version), results=results
        )

    @mapped
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
            for key, field in (
                ("image_height", "image_height"),
                ("image_width", "image_width"),
                ("image_channels", "image_channels"),
            ):
                if params.get(key, "").isdigit():
                    setattr(summary, field, int(params[key]))
            for labels in model.labels.values():
                summary.labels.extend(labels)
                break
        return vpb.ListModelsResponse(models=list(summaries.values()))
