"""Requests from Python values and results from responses: shared by Client and AsyncClient."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
from tritonclient.grpc import service_pb2 as pb
from tritonclient.utils import (
    deserialize_bytes_tensor,
    np_to_triton_dtype,
    serialize_byte_tensor,
    triton_to_np_dtype,
)

from .results import (
    Box,
    Character,
    Classification,
    Detection,
    Label,
    ModelInfo,
    Reading,
    Segmentation,
)
from .v1 import vision_pb2 as vpb

# What one image may be: a path, encoded bytes, a numpy array (HxW or HxWxC uint8) or a PIL image.
ImageLike = str | os.PathLike | bytes | bytearray | np.ndarray | Any


def is_many(images: Any) -> bool:
    """A list / tuple of images, or a 4-D array (a batch), is many; anything else is one."""
    if isinstance(images, (list, tuple)):
        return True
    return isinstance(images, np.ndarray) and images.ndim == 4


def _raw(array: np.ndarray) -> vpb.Image:
    if array.dtype != np.uint8:
        raise TypeError(f"image arrays must be uint8, got {array.dtype}")
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"image arrays are HxW or HxWxC with C in 1, 3, 4; got shape {array.shape}"
        )
    h, w, c = array.shape
    raw = vpb.RawImage(pixels=np.ascontiguousarray(array).tobytes(), height=h, width=w, channels=c)
    return vpb.Image(raw=raw)


def to_image(image: ImageLike) -> vpb.Image:
    if isinstance(image, (bytes, bytearray)):
        return vpb.Image(encoded=bytes(image))
    if isinstance(image, (str, os.PathLike)):
        return vpb.Image(encoded=Path(image).read_bytes())
    if isinstance(image, np.ndarray):
        return _raw(image)
    if hasattr(image, "mode") and hasattr(image, "size"):  # a PIL image, without importing PIL
        if image.mode not in ("L", "RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in image.mode else "RGB")
        return _raw(np.asarray(image, np.uint8))
    raise TypeError(
        f"cannot send {type(image).__name__} as an image: use a path, bytes, a uint8 numpy array "
        "or a PIL image"
    )


def to_images(images: ImageLike | Sequence[ImageLike]) -> list[vpb.Image]:
    if is_many(images):
        return [to_image(i) for i in cast(Sequence[ImageLike], images)]
    return [to_image(cast(ImageLike, images))]


def classifications(response: vpb.ClassifyResponse) -> list[Classification]:
    return [
        Classification(tuple(Label(x.label, x.index, x.score) for x in result.labels))
        for result in response.results
    ]


def detections(response: vpb.DetectResponse) -> list[list[Detection]]:
    return [
        [
            Detection(Box(d.box.x1, d.box.y1, d.box.x2, d.box.y2), d.label, d.index, d.score)
            for d in result.detections
        ]
        for result in response.results
    ]


def readings(response: vpb.ReadResponse) -> list[Reading]:
    return [
        Reading(
            result.text,
            tuple(
                Character(c.text, Box(c.box.x1, c.box.y1, c.box.x2, c.box.y2), c.score)
                for c in result.characters
            ),
        )
        for result in response.results
    ]


def segmentations(response: vpb.SegmentResponse) -> list[Segmentation]:
    results = []
    for mask in response.results:
        if mask.encoding == vpb.MASK_ENCODING_PNG:
            from PIL import Image

            array = np.asarray(Image.open(io.BytesIO(mask.data)), np.uint8)
        else:
            array = np.frombuffer(mask.data, np.uint8).reshape(mask.height, mask.width)
        results.append(Segmentation(array, tuple(mask.labels)))
    return results


def model_summaries(response: vpb.ListModelsResponse) -> list[ModelInfo]:
    return [
        ModelInfo(
            name=m.name,
            versions=tuple(m.versions),
            task=m.task,
            ready=m.ready,
            image_size=(m.image_height, m.image_width, m.image_channels),
            labels=tuple(m.labels),
        )
        for m in response.models
    ]


def with_tensors(info: ModelInfo, metadata: pb.ModelMetadataResponse) -> ModelInfo:
    def describe(tensors) -> dict[str, tuple[str, tuple[int, ...]]]:
        return {t.name: (t.datatype, tuple(t.shape)) for t in tensors}

    return ModelInfo(
        name=info.name,
        versions=tuple(metadata.versions) or info.versions,
        task=info.task,
        ready=info.ready,
        image_size=info.image_size,
        labels=info.labels,
        inputs=describe(metadata.inputs),
        outputs=describe(metadata.outputs),
    )


def infer_request(
    model: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None, version: str
) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model, model_version=version)
    for name, value in inputs.items():
        array = np.asarray(value)
        datatype = "BYTES" if array.dtype.kind in "OSU" else np_to_triton_dtype(array.dtype)
        if datatype is None:
            raise TypeError(f"input '{name}': numpy dtype {array.dtype} has no protocol datatype")
        request.inputs.add(name=name, datatype=datatype, shape=list(array.shape))
        if datatype == "BYTES":
            request.raw_input_contents.append(serialize_byte_tensor(array.astype(object)).item())
        else:
            request.raw_input_contents.append(np.ascontiguousarray(array).tobytes())
    for name in outputs or ():
        request.outputs.add(name=name)
    return request


def infer_outputs(response: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    result = {}
    for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=True):
        shape = tuple(tensor.shape)
        if tensor.datatype == "BYTES":
            result[tensor.name] = deserialize_bytes_tensor(raw).reshape(shape)
        else:
            result[tensor.name] = np.frombuffer(raw, triton_to_np_dtype(tensor.datatype)).reshape(
                shape
            )
    return result
