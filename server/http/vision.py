"""The Vision API over HTTP: an image as the request body (or one or more `image` fields of a
multipart form) in, JSON out: labels, boxes, masks (PNG in base64, or run-length encoded).

    curl -F image=@docs/images/digit-7.png localhost:8000/v1/models/mnist/classify
    curl --data-binary @scene.png -H 'Content-Type: image/png' \\
        'localhost:8000/v1/models/ssd/detect?score_threshold=0.6'
"""

from __future__ import annotations

import base64
import time
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..core.auth import Scope
from ..core.vision import Vision
from ..observability import request_context
from ..protocol.errors import InvalidInput, LimitExceeded
from ..protocol.types import ImageSource
from ..tasks import ClassifyOptions, DetectOptions, SegmentOptions
from ..tasks.results import Classification, Detections, Mask
from ..tasks.segment import check_encoded_size
from .calls import CallWrapper, json_response, read_body

MASK_ENCODINGS = ("png", "rle", "raw")


def _query_number(request: Request, key: str, kind: type, default: Any = None) -> Any:
    text = request.query_params.get(key)
    if text is None or text == "":
        return default
    try:
        value = kind(text)
    except ValueError:
        raise InvalidInput(
            f"query parameter '{key}' must be a {kind.__name__}, got '{text}'"
        ) from None
    if value < 0:
        raise InvalidInput(f"query parameter '{key}' must not be negative")
    return value


async def _images(request: Request, limit: int) -> list[ImageSource]:
    """The request's images: multipart `image` fields, or the whole body."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise LimitExceeded(
                f"the body of {declared} bytes is larger than this server's limit of {limit} "
                "bytes (max_message_mb)"
            )
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


def _rle(mask: np.ndarray) -> list[list[int]]:
    """Row-major runs as [class index, run length] pairs."""
    flat = mask.reshape(-1)
    if flat.size == 0:
        return []
    starts = np.flatnonzero(np.concatenate(([True], flat[1:] != flat[:-1])))
    lengths = np.diff(np.concatenate((starts, [flat.size])))
    return [[int(flat[s]), int(n)] for s, n in zip(starts, lengths, strict=True)]


def _classification(result: Classification) -> dict:
    return {
        "labels": [{"label": x.label, "index": x.index, "score": x.score} for x in result.labels]
    }


def _detections(result: Detections) -> dict:
    return {
        "width": result.width,
        "height": result.height,
        "detections": [
            {
                "box": {"x1": d.box.x1, "y1": d.box.y1, "x2": d.box.x2, "y2": d.box.y2},
                "label": d.label,
                "index": d.index,
                "score": d.score,
            }
            for d in result.detections
        ],
    }


def _mask(result: Mask, encoding: str) -> dict:
    entry: dict[str, Any] = {
        "width": result.width,
        "height": result.height,
        "labels": result.labels,
        "encoding": encoding,
    }
    if encoding == "png":
        entry["mask"] = base64.b64encode(result.png()).decode()
    elif encoding == "rle":
        entry["counts"] = _rle(result.mask)
    else:
        entry["mask"] = base64.b64encode(result.mask.tobytes()).decode()
    return entry


class VisionRoutes:
    def __init__(self, vision: Vision, calls: CallWrapper, limit: int) -> None:
        self._vision = vision
        self._calls = calls
        self._limit = limit

    async def _run(self, request: Request, task: str, options: Any) -> tuple[dict, list]:
        started = time.perf_counter()
        images = await _images(request, self._limit)
        model, results = await self._vision.run(
            task, request.path_params["model"], request.path_params.get("version", ""), images,
            options,
        )  # fmt: skip
        record = request_context.current.get()
        stats = model.stats.view(model.name, str(model.version))
        answer = {
            "model": model.name,
            "model_version": str(model.version),
            "server_ms": round((time.perf_counter() - started) * 1000, 3),
            "batch_size": record.batch_items if record is not None else 0,
            "average_batch_size": round(
                stats.inference_count / stats.execution_count if stats.execution_count else 0, 3
            ),
        }
        return answer, results

    async def classify(self, request: Request) -> Response:
        options = ClassifyOptions(_query_number(request, "top_k", int, 1))
        answer, results = await self._run(request, "classification", options)
        return json_response(answer | {"results": [_classification(r) for r in results]})

    async def detect(self, request: Request) -> Response:
        options = DetectOptions(
            _query_number(request, "score_threshold", float),
            _query_number(request, "max_detections", int),
        )
        answer, results = await self._run(request, "detection", options)
        return json_response(answer | {"results": [_detections(r) for r in results]})

    async def segment(self, request: Request) -> Response:
        encoding = request.query_params.get("mask", "png")
        if encoding not in MASK_ENCODINGS:
            raise InvalidInput(f"query parameter 'mask' must be one of {MASK_ENCODINGS}")
        options = SegmentOptions(
            raw=encoding == "raw", response_budget=self._vision.response_budget
        )
        answer, results = await self._run(request, "segmentation", options)
        masks = [_mask(r, encoding) for r in results]
        # Run lengths: at least 8 bytes of JSON a run.
        encoded = sum(len(m["mask"]) if "mask" in m else 8 * len(m["counts"]) for m in masks)
        check_encoded_size(encoded, self._vision.response_budget)
        return json_response(answer | {"results": masks})

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
        for base in ("/v1/models/{model}", "/v1/models/{model}/versions/{version}"):
            for rpc, path, handler in (
                ("Classify", "classify", self.classify),
                ("Detect", "detect", self.detect),
                ("Segment", "segment", self.segment),
            ):
                endpoint = self._calls.endpoint(rpc, scope)(handler)
                table.append(Route(f"{base}/{path}", endpoint, methods=["POST"]))
        return table
