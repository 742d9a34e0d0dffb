"""Triton's generate extension over HTTP: `POST /v2/models/{m}/generate` answers once, and
`generate_stream` answers with server-sent events, one a response (a text generator's tokens as
they are decoded).

The body is one JSON object: each key but `id` and `parameters` is an input of that name, its
value a scalar or a list (shaped by the model's config, one batch row); `parameters` are the
request's. An answer is an object of the model's name and version and each output by name:
a scalar when it holds one element, else nested lists. generate_stream streams unless the body
sets `"stream": false`; an error after the first event comes as an event `{"error": ...}`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..core.dataplane import DataPlane
from ..models.model import TensorSpec
from ..protocol.errors import InvalidInput, ServingError
from ..protocol.generator_config import STREAM_INPUT
from ..protocol.status import HTTP_STATUS
from ..protocol.types import InferRequest, InferResponse, InputTensor
from ..settings import ServerSettings
from .calls import json_response, parse_json, read_body
from .convert import flatten

JSON_TYPES: dict[str, tuple[type, ...]] = {
    "BYTES": (str,),
    "BOOL": (bool,),
    "FP16": (int, float),
    "FP32": (int, float),
    "FP64": (int, float),
}
"""What a JSON value may be for a datatype (integers for the integer types)."""


def _shape(spec: TensorSpec, count: int, batching: bool) -> tuple[int, ...]:
    dims = list(spec.dims)
    variable = [i for i, d in enumerate(dims) if d < 0]
    fixed = int(np.prod([d for d in dims if d >= 0]))
    if len(variable) > 1 or (not variable and fixed != count) or (variable and count % fixed):
        raise InvalidInput(
            f"input '{spec.name}': {count} value(s) do not fill its shape {dims} (one request "
            "of the generate extension is one batch row)"
        )
    if variable:
        dims[variable[0]] = count // max(fixed, 1)
    return tuple([1, *dims] if batching else dims)


def _tensor(spec: TensorSpec, value: Any, batching: bool) -> InputTensor:
    values = flatten(value)
    kinds = JSON_TYPES.get(spec.datatype, (int,))
    for item in values:
        if not isinstance(item, kinds) or (isinstance(item, bool) and bool not in kinds):
            raise InvalidInput(
                f"input '{spec.name}': expected {spec.datatype} values, got {json.dumps(item)[:40]}"
            )
    return InputTensor(spec.name, spec.datatype, _shape(spec, len(values), batching), None, values)


def generate_request(
    dataplane: DataPlane,
    body: bytes,
    model: str,
    version: str,
    max_json_bytes: int,
    streaming: bool,
) -> InferRequest:
    document = parse_json(body, "the request", max_json_bytes)
    if not isinstance(document, dict):
        raise InvalidInput("the generate body must be a JSON object")
    found = dataplane.manager.get(model, version)
    parameters = document.pop("parameters", None) or {}
    if not isinstance(parameters, dict):
        raise InvalidInput("'parameters' must be a JSON object")
    request_id = document.pop("id", "")
    if streaming and STREAM_INPUT in found.inputs:
        document.setdefault(STREAM_INPUT, True)
    inputs = []
    for name, value in document.items():
        spec = found.inputs.get(name)
        if spec is None:
            raise InvalidInput(
                f"'{name}' is not an input of model '{found.name}'; its inputs are "
                f"{sorted(found.inputs)} (and 'id', 'parameters')"
            )
        inputs.append(_tensor(spec, value, found.max_batch_size > 0))
    return InferRequest(model, version, str(request_id), inputs, [], parameters)


def answer_document(response: InferResponse) -> dict[str, Any]:
    document: dict[str, Any] = {"model_name": response.model, "model_version": response.version}
    if response.id:
        document["id"] = response.id
    for output in response.outputs:
        array = output.array
        if output.datatype == "BYTES":
            array = np.array(
                [
                    b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b)
                    for b in array.flat
                ],
                dtype=object,
            ).reshape(array.shape)
        value = array.reshape(-1)[0] if array.size == 1 else array.tolist()
        document[output.name] = value.item() if isinstance(value, np.generic) else value
    return document


def _event(document: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(document, separators=(",", ":")).encode() + b"\n\n"


class GenerateRoutes:
    def __init__(self, dataplane: DataPlane, settings: ServerSettings) -> None:
        self._dataplane = dataplane
        self._settings = settings

    async def _request(self, request: Request, streaming: bool) -> InferRequest:
        body = await read_body(request, self._settings.max_message_bytes)
        return generate_request(
            self._dataplane,
            body,
            request.path_params["model"],
            request.path_params.get("version", ""),
            self._settings.max_json_bytes,
            streaming,
        )

    async def generate(self, request: Request) -> Response:
        infer_request = await self._request(request, False)
        responses = self._dataplane.stream(infer_request, many=False)
        async with contextlib.aclosing(responses):
            async for response in responses:
                if response.outputs:
                    return json_response(answer_document(response))
        raise InvalidInput("the model sent no response")

    async def generate_stream(self, request: Request) -> Response:
        """Waits for the first response before answering, so an error before it gets its
        status code; later ones come as an error event, and the stream ends."""
        infer_request = await self._request(request, True)
        responses = self._dataplane.stream(infer_request)
        try:
            first = await anext(responses)
        except StopAsyncIteration:
            first = None
        except BaseException:
            await responses.aclose()
            raise
        return StreamingResponse(_events(first, responses), media_type="text/event-stream")


async def _events(
    first: InferResponse | None, responses: AsyncGenerator[InferResponse, None]
) -> AsyncIterator[bytes]:
    async with contextlib.aclosing(responses):
        try:
            if first is not None and first.outputs:
                yield _event(answer_document(first))
            async for response in responses:
                if response.outputs:
                    yield _event(answer_document(response))
        except ServingError as error:
            yield _event({"error": error.message, "status": HTTP_STATUS[error.kind]})
