"""The KServe v2 REST transport (Starlette on uvicorn): health, metadata, config, infer (JSON
and Triton's binary-data extension), statistics and repository control, with the same data
plane, errors, limits, tokens and request ids as gRPC. tritonclient.http works unchanged."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Sequence

from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..core.auth import Scope
from ..core.control import Control
from ..core.dataplane import DataPlane
from ..core.shared_memory import OFF, RegionRegistry, SharedMemoryOff
from ..observability.observe import Observer
from ..protocol.errors import InvalidInput
from ..settings import ServerSettings
from . import convert as http_convert
from . import openapi
from .calls import JSON, CallWrapper, Handler, json_response, parse_json, read_body
from .generate import GenerateRoutes

log = logging.getLogger(__name__)
PARSE_ON_LOOP_BYTES = 256 * 1024


class V2Routes:
    """The route handlers; `endpoint` wraps each with auth, request ids, errors and metrics."""

    def __init__(
        self,
        dataplane: DataPlane,
        control: Control,
        settings: ServerSettings,
        observer: Observer,
        calls: CallWrapper,
    ) -> None:
        self._dataplane = dataplane
        self._control = control
        self._settings = settings
        self._observer = observer
        self.calls = calls

    @property
    def dataplane(self) -> DataPlane:
        return self._dataplane

    @property
    def settings(self) -> ServerSettings:
        return self._settings

    # ---- health and metadata ---------------------------------------------------------------

    async def live(self, request: Request) -> Response:
        return json_response({"live": True})

    async def ready(self, request: Request) -> Response:
        ready = self._control.server_ready and not self._observer.draining
        return json_response({"ready": ready}, 200 if ready else 503)

    async def model_ready(self, request: Request) -> Response:
        name, version = _model(request)
        ready = self._control.model_ready(name, version)
        return json_response({"name": name, "ready": ready}, 200 if ready else 503)

    async def server_metadata(self, request: Request) -> Response:
        server = self._control.server_metadata()
        return json_response(
            {"name": server.name, "version": server.version, "extensions": list(server.extensions)}
        )

    async def model_metadata(self, request: Request) -> Response:
        return json_response(http_convert.metadata(self._control.model_metadata(*_model(request))))

    async def model_config(self, request: Request) -> Response:
        config = self._control.model_config(*_model(request))
        return json_response(json_format.MessageToDict(config, preserving_proto_field_name=True))

    async def statistics(self, request: Request) -> Response:
        name, version = _model(request) if "model" in request.path_params else ("", "")
        views = await self._control.statistics(name, version)
        return json_response({"model_stats": [http_convert.statistics(v) for v in views]})

    # ---- inference ---------------------------------------------------------------------------

    async def infer(self, request: Request) -> Response:
        body = await read_body(request, self._settings.max_message_bytes)
        name, version = _model(request)
        convert = functools.partial(
            http_convert.infer_request,
            body,
            request.headers.get(http_convert.HEADER_LENGTH),
            name,
            version,
            self._settings.max_json_bytes,
        )
        # Converting a large body takes a while: off the event loop (the JSON parser itself
        # holds the interpreter, so max_json_mb is what bounds its share).
        infer_request, all_binary = (
            await asyncio.to_thread(convert) if len(body) > PARSE_ON_LOOP_BYTES else convert()
        )
        answer = await self._dataplane.infer(infer_request)
        content, header_length = http_convert.infer_response(answer, all_binary)
        if header_length is None:
            return Response(content, media_type=JSON)
        return Response(
            content,
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(header_length)},
        )

    # ---- repository --------------------------------------------------------------------------

    async def repository_index(self, request: Request) -> Response:
        body = await read_body(request, 1 << 20)
        ready_only = bool(_document(body, self._settings.max_json_bytes).get("ready", False))
        rows = await self._control.index(ready_only)
        return json_response([http_convert.index_entry(r) for r in rows])

    async def load(self, request: Request) -> Response:
        body = await read_body(request, self._settings.max_message_bytes)
        parameters = _document(body, self._settings.max_json_bytes).get("parameters") or {}
        config = parameters.get("config") if isinstance(parameters, dict) else None
        if config is not None and not isinstance(config, str):
            config = json.dumps(config)
        await self._control.load(request.path_params["model"], config)
        return json_response({})

    async def unload(self, request: Request) -> Response:
        await self._control.unload(request.path_params["model"])
        return json_response({})


class SharedMemoryRoutes:
    """System shared memory over HTTP, as Triton's extension has it (admin calls)."""

    def __init__(self, dataplane: DataPlane, settings: ServerSettings) -> None:
        self._dataplane = dataplane
        self._settings = settings

    def _regions(self) -> RegionRegistry:
        if self._dataplane.regions is None:
            raise SharedMemoryOff(OFF)
        return self._dataplane.regions

    async def register(self, request: Request) -> Response:
        body = await read_body(request, 1 << 16)
        document = _document(body, self._settings.max_json_bytes)
        key, offset, size = (
            document.get("key"),
            document.get("offset", 0),
            document.get("byte_size"),
        )
        wrong = [
            f"{name} must be {kind}, got {json.dumps(value)[:40]}"
            for name, value, kind, fits in (
                ("key", key, "a string", isinstance(key, str)),
                ("offset", offset, "an integer", type(offset) is int),
                ("byte_size", size, "an integer", type(size) is int),
            )
            if not fits
        ]
        if wrong:
            raise InvalidInput(
                f'register takes {{"key": string, "offset": integer, "byte_size": '
                f"integer}}: {'; '.join(wrong)}"
            )
        assert isinstance(key, str) and isinstance(offset, int) and isinstance(size, int)
        await self._regions().register(request.path_params["region"], key, offset, size)
        return json_response({})

    async def status(self, request: Request) -> Response:
        regions = self._regions().status(request.path_params.get("region", ""))
        return json_response(
            [
                {"name": r.name, "key": r.key, "offset": r.offset, "byte_size": r.byte_size}
                for r in regions
            ]
        )

    async def unregister(self, request: Request) -> Response:
        await self._regions().unregister(request.path_params.get("region", ""))
        return json_response({})


def _model(request: Request) -> tuple[str, str]:
    return request.path_params["model"], request.path_params.get("version", "")


def _document(body: bytes, max_bytes: int) -> dict:
    if not body.strip():
        return {}
    document = parse_json(body, "the body", max_bytes)
    if not isinstance(document, dict):
        raise InvalidInput("the body must be a JSON object")
    return document


def build_app(routes: V2Routes, extra: Sequence[BaseRoute] = ()) -> Starlette:
    inference, admin = Scope.INFERENCE, Scope.ADMIN
    model_paths = ("/v2/models/{model}", "/v2/models/{model}/versions/{version}")

    def add(path: str, handler: Handler, rpc: str, scope: Scope | None, method: str) -> Route:
        return Route(path, routes.calls.endpoint(rpc, scope)(handler), methods=[method])

    table = [
        add("/v2/health/live", routes.live, "ServerLive", None, "GET"),
        add("/v2/health/ready", routes.ready, "ServerReady", None, "GET"),
        add("/v2", routes.server_metadata, "ServerMetadata", inference, "GET"),
        add("/v2/models/stats", routes.statistics, "ModelStatistics", admin, "GET"),
        add("/v2/repository/index", routes.repository_index, "RepositoryIndex", inference, "POST"),
        add(
            "/v2/repository/models/{model}/load", routes.load, "RepositoryModelLoad", admin, "POST"
        ),
        add(
            "/v2/repository/models/{model}/unload",
            routes.unload,
            "RepositoryModelUnload",
            admin,
            "POST",
        ),
    ]
    shared = SharedMemoryRoutes(routes.dataplane, routes.settings)
    generate = GenerateRoutes(routes.dataplane, routes.settings)
    for base in ("/v2/systemsharedmemory", "/v2/systemsharedmemory/region/{region}"):
        table += [
            add(f"{base}/status", shared.status, "SystemSharedMemoryStatus", admin, "GET"),
            add(
                f"{base}/unregister",
                shared.unregister,
                "SystemSharedMemoryUnregister",
                admin,
                "POST",
            ),
        ]
    table.append(
        add(
            "/v2/systemsharedmemory/region/{region}/register",
            shared.register,
            "SystemSharedMemoryRegister",
            admin,
            "POST",
        )
    )
    for base in model_paths:
        table += [
            add(base, routes.model_metadata, "ModelMetadata", inference, "GET"),
            add(f"{base}/ready", routes.model_ready, "ModelReady", None, "GET"),
            add(f"{base}/config", routes.model_config, "ModelConfig", inference, "GET"),
            add(f"{base}/infer", routes.infer, "ModelInfer", inference, "POST"),
            add(f"{base}/generate", generate.generate, "ModelGenerate", inference, "POST"),
            add(
                f"{base}/generate_stream",
                generate.generate_stream,
                "ModelGenerateStream",
                inference,
                "POST",
            ),
            add(f"{base}/stats", routes.statistics, "ModelStatistics", admin, "GET"),
        ]
    document = json.dumps(openapi.spec(), separators=(",", ":")).encode()

    async def openapi_json(request: Request) -> Response:
        return Response(document, media_type=JSON)

    table.append(Route("/openapi.json", openapi_json, methods=["GET"]))
    return Starlette(routes=[*table, *extra])
