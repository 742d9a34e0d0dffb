"""Each SDK method as a plain description of one RPC: which service and method, the request,
how to read the answer. Client and AsyncClient only differ in how they send it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from . import _convert
from ._convert import ImageLike
from .errors import DeepserveError
from .v1 import vision_pb2 as vpb
from .v1 import vision_pb2_grpc as vpb_grpc

VISION = "vision"
TENSORS = "tensors"


def stubs(channel: Any) -> dict[str, Any]:
    """The stub for each service on one channel (sync or asyncio), keyed as Call.service."""
    return {
        VISION: vpb_grpc.VisionStub(channel),
        TENSORS: pb_grpc.GRPCInferenceServiceStub(channel),
    }


@dataclass
class Call:
    service: str
    method: str
    request: Any
    parse: Callable[[Any], Any]
    task: str = ""
    """For task calls: the task, so a missing model name can be filled in."""


def _one_or_many(images: Any, parse: Callable[[Any], list[Any]]) -> Callable[[Any], Any]:
    many = _convert.is_many(images)
    return lambda response: parse(response) if many else parse(response)[0]


def classify(
    images: ImageLike | Sequence[ImageLike], model: str | None, top_k: int, version: str
) -> Call:
    request = vpb.ClassifyRequest(
        model=model or "", model_version=version, images=_convert.to_images(images), top_k=top_k
    )
    return Call(
        VISION,
        "Classify",
        request,
        _one_or_many(images, _convert.classifications),
        "classification",
    )


def detect(
    images: ImageLike | Sequence[ImageLike],
    model: str | None,
    score_threshold: float | None,
    max_detections: int | None,
    version: str,
) -> Call:
    request = vpb.DetectRequest(
        model=model or "", model_version=version, images=_convert.to_images(images)
    )
    if score_threshold is not None:
        request.score_threshold = score_threshold
    if max_detections is not None:
        request.max_detections = max_detections
    return Call(VISION, "Detect", request, _one_or_many(images, _convert.detections), "detection")


def segment(
    images: ImageLike | Sequence[ImageLike], model: str | None, png: bool, version: str
) -> Call:
    request = vpb.SegmentRequest(
        model=model or "",
        model_version=version,
        images=_convert.to_images(images),
        mask_encoding=vpb.MASK_ENCODING_PNG if png else vpb.MASK_ENCODING_RAW,
    )
    return Call(
        VISION, "Segment", request, _one_or_many(images, _convert.segmentations), "segmentation"
    )


def infer(
    model: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None, version: str
) -> Call:
    return Call(
        TENSORS,
        "ModelInfer",
        _convert.infer_request(model, inputs, outputs, version),
        _convert.infer_outputs,
    )


def list_models() -> Call:
    return Call(VISION, "ListModels", vpb.ListModelsRequest(), _convert.model_summaries)


def model_metadata(name: str) -> Call:
    return Call(TENSORS, "ModelMetadata", pb.ModelMetadataRequest(name=name), lambda r: r)


def server_ready() -> Call:
    return Call(TENSORS, "ServerReady", pb.ServerReadyRequest(), lambda r: r.ready)


def server_live() -> Call:
    return Call(TENSORS, "ServerLive", pb.ServerLiveRequest(), lambda r: r.live)


def pick_model(task: str, models: list[Any]) -> str:
    """The only model of `task` on the server; asking without a name is ambiguous otherwise."""
    candidates = [m.name for m in models if m.task == task]
    if len(candidates) != 1:
        raise DeepserveError(
            f"say which model: the server has {len(candidates)} {task} models {candidates}"
        )
    return candidates[0]
