"""The task API's gRPC transport (`deepserve.v1.Vision`): messages <-> the Vision core's types;
masks encoded (raw or PNG) here, at the edge."""

from __future__ import annotations

from deepserve.v1 import vision_pb2 as vpb
from deepserve.v1 import vision_pb2_grpc as vpb_grpc

from ..core.vision import Vision
from ..observability.observe import Observer
from ..protocol.types import ImageSource
from ..tasks import ClassifyOptions, DetectOptions, SegmentOptions
from ..tasks.results import Classification, Detections
from ..tasks.segment import check_encoded_size
from .calls import observed


def _images(request) -> list[ImageSource]:
    images = []
    for image in request.images:
        if image.WhichOneof("source") == "raw":
            raw = image.raw
            images.append(ImageSource(None, raw.pixels, raw.height, raw.width, raw.channels))
        else:
            images.append(ImageSource(encoded=image.encoded))
    return images


def _classification(result: Classification) -> vpb.Classification:
    return vpb.Classification(
        labels=[vpb.Label(label=x.label, index=x.index, score=x.score) for x in result.labels]
    )


def _detections(result: Detections) -> vpb.Detections:
    return vpb.Detections(
        width=result.width,
        height=result.height,
        detections=[
            vpb.Detection(
                box=vpb.Box(x1=d.box.x1, y1=d.box.y1, x2=d.box.x2, y2=d.box.y2),
                label=d.label,
                index=d.index,
                score=d.score,
            )
            for d in result.detections
        ],
    )


class VisionServicer(vpb_grpc.VisionServicer):
    def __init__(self, vision: Vision, observer: Observer) -> None:
        self._vision = vision
        self._observer = observer

    @observed
    async def Classify(self, request: vpb.ClassifyRequest, context) -> vpb.ClassifyResponse:
        options = ClassifyOptions(request.top_k if request.HasField("top_k") else 1)
        model, results = await self._vision.run(
            "classification",
            request.model,
            request.model_version,
            _images(request),
            options,
            context.time_remaining(),
        )
        return vpb.ClassifyResponse(
            model=model.name,
            model_version=str(model.version),
            results=[_classification(r) for r in results],
        )

    @observed
    async def Detect(self, request: vpb.DetectRequest, context) -> vpb.DetectResponse:
        options = DetectOptions(
            request.score_threshold if request.HasField("score_threshold") else None,
            request.max_detections if request.HasField("max_detections") else None,
        )
        model, results = await self._vision.run(
            "detection",
            request.model,
            request.model_version,
            _images(request),
            options,
            context.time_remaining(),
        )
        return vpb.DetectResponse(
            model=model.name,
            model_version=str(model.version),
            results=[_detections(r) for r in results],
        )

    @observed
    async def Segment(self, request: vpb.SegmentRequest, context) -> vpb.SegmentResponse:
        as_png = request.mask_encoding == vpb.MASK_ENCODING_PNG
        budget = self._vision.response_budget
        options = SegmentOptions(raw=not as_png, response_budget=budget)
        model, results = await self._vision.run(
            "segmentation",
            request.model,
            request.model_version,
            _images(request),
            options,
            context.time_remaining(),
        )
        masks = [
            vpb.Mask(
                height=m.height,
                width=m.width,
                encoding=request.mask_encoding,
                data=m.png() if as_png else m.mask.tobytes(),
                labels=m.labels,
            )
            for m in results
        ]
        check_encoded_size(sum(len(m.data) for m in masks), budget)
        return vpb.SegmentResponse(
            model=model.name, model_version=str(model.version), results=masks
        )

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
