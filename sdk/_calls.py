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
    metadata: tuple[tuple[str, str], ...] = ()
    """Headers of this call beyond the client's (a sequence's id, for proxies to route by)."""


SEQUENCE_HEADER = "x-sequence-id"
"""Names a request's sequence for a proxy in front of several servers: each sequence's
requests must reach the one server that holds its state (docker/proxy hashes this header)."""


def _one_or_many(images: Any, parse: Callable[[Any], list[Any]]) -> Callable[[Any], Any]:
    many = _convert.is_many(images)
    return lambda response: parse(response) if many else parse(response)[0]


@dataclass(frozen=True)
class TaskRpc:
    """One task of the Vision API, as the SDK calls it."""

    task: str
    """The task models declare (a call without a model name takes the only such model)."""
    method: str
    """Its RPC of deepserve.v1.Vision."""
    request: Callable[..., Any]
    """Its request message."""
    parse: Callable[[Any], list[Any]]
    """Its response -> one result per image."""


TASKS: dict[str, TaskRpc] = {
    "classify": TaskRpc(
        "classification", "Classify", vpb.ClassifyRequest, _convert.classifications
    ),
    "detect": TaskRpc("detection", "Detect", vpb.DetectRequest, _convert.detections),
    "segment": TaskRpc("segmentation", "Segment", vpb.SegmentRequest, _convert.segmentations),
    "read": TaskRpc("read", "Read", vpb.ReadRequest, _convert.readings),
}
"""By the name of the task's HTTP route and SDK method."""


def task(
    name: str,
    images: ImageLike | Sequence[ImageLike],
    model: str | None,
    version: str,
    options: Mapping[str, Any],
) -> Call:
    """Any task's call; `options` are fields of its request message (None: left unset)."""
    rpc = TASKS.get(name) or _from_proto(name)
    request = rpc.request(
        model=model or "", model_version=version, images=_convert.to_images(images)
    )
    for field, value in options.items():
        if value is None:
            continue
        try:
            setattr(request, field, value)
        except (AttributeError, TypeError, ValueError) as exc:
            raise DeepserveError(f"{name}: option '{field}': {exc}") from None
    return Call(VISION, rpc.method, request, _one_or_many(images, rpc.parse), rpc.task)


def _from_proto(name: str) -> TaskRpc:
    """A task the SDK has no wrapper for, found in deepserve.v1.Vision by its RPC (the route's
    name capitalised): its answer's `results` come back as the messages themselves."""
    method = vpb.DESCRIPTOR.services_by_name["Vision"].methods_by_name.get(name.capitalize())
    if method is None:
        raise DeepserveError(f"unknown task '{name}'; the SDK knows {sorted(TASKS)}")
    request = getattr(vpb, method.input_type.name)
    return TaskRpc("", method.name, request, lambda response: list(response.results))


def mask_encoding(png: bool) -> int:
    return vpb.MASK_ENCODING_PNG if png else vpb.MASK_ENCODING_RAW


def infer(
    model: str,
    inputs: Mapping[str, np.ndarray],
    outputs: Sequence[str] | None,
    version: str,
    sequence: tuple[int | str, bool, bool] | None = None,
) -> Call:
    """`sequence`: (id, start, end) of a stateful model's sequence."""
    request = _convert.infer_request(model, inputs, outputs, version)
    if sequence is not None:
        sequence_id, start, end = sequence
        if isinstance(sequence_id, str):
            request.parameters["sequence_id"].string_param = sequence_id
        else:
            request.parameters["sequence_id"].uint64_param = sequence_id
        request.parameters["sequence_start"].bool_param = start
        request.parameters["sequence_end"].bool_param = end
        routing = ((SEQUENCE_HEADER, str(sequence_id)),)
        return Call(TENSORS, "ModelInfer", request, _convert.infer_outputs, metadata=routing)
    return Call(TENSORS, "ModelInfer", request, _convert.infer_outputs)


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
