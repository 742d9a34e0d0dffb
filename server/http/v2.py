"""The KServe v2 REST transport (Starlette on uvicorn): health, metadata, config, infer (JSON
and Triton's binary-data extension), statistics and repository control, with the same data
plane, errors, limits, tokens and request ids as gRPC. tritonclient.http works unchanged."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..._version import __version__
from ..core.auth import Authenticator, Scope
from ..core.dataplane import DataPlane
from ..grpc.inference import EXTENSIONS
from ..models.manager import ModelManager
from ..observability import request_context
from ..observability.observe import Observer
from ..protocol.errors import InvalidInput, LimitExceeded, ServingError
from ..protocol.status import HTTP_STATUS
from ..settings import ServerSettings
from . import convert as http_convert
from . import openapi

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]
JSON = "application/json"


def json_response(document: Any, status: int = 200, headers: dict | None = None) -> Response:
    body = json.dumps(document, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type=JSON, headers=headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused past `limit` bytes before it is all read (Content-Length or not)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise LimitExceeded(
            f"the body of {declared} bytes is larger than this server's limit of {limit} "
            "bytes (max_message_mb)"
        )
    parts, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise LimitExceeded(
                f"the body is larger than this server's limit of {limit} bytes (max_message_mb)"
            )
        parts.append(chunk)
    return b"".join(parts)


class V2Routes:
    """The route handlers; `endpoint` wraps each with auth, request ids, errors and metrics."""

    def __init__(
        self,
        dataplane: DataPlane,
        manager: ModelManager,
        settings: ServerSettings,
        observer: Observer,
        auth: Authenticator,
    ) -> None:
        self._dataplane = dataplane
        self._manager = manager
        self._settings = settings
        self._observer = observer
        self._auth = auth

    def endpoint(self, rpc: str, scope: Scope | None) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            @functools.wraps(handler)
            async def wrapper(request: Request) -> Response:
                return await self._handle(rpc, scope, handler, request)

            return wrapper

        return decorate

    async def _handle(
        self, rpc: str, scope: Scope | None, handler: Handler, request: Request
    ) -> Response:
        observer = self._observer
        request_id = request_context.request_id_from(
            (("x-request-id", request.headers.get("x-request-id", "")),)
        )
        with observer.call(rpc, request_id, request.headers.items()) as record:
            try:
                if scope is not None:
                    observer.refuse_if_draining()
                    self._auth.authorize(request.headers.get("authorization"), scope)
                response = await handler(request)
            except ServingError as error:
                record.code = error.kind.value
                response = _error(error.message, request_id, HTTP_STATUS[error.kind])
            except Exception as error:  # a bug: logged, answered without details
                log.exception("unexpected error while handling a request")
                record.code = "INTERNAL"
                response = _error(f"internal error: {type(error).__name__}", request_id, 500)
        response.headers["x-request-id"] = request_id
        return response

    # ---- health and metadata ---------------------------------------------------------------

    async def live(self, request: Request) -> Response:
        return json_response({"live": True})

    async def ready(self, request: Request) -> Response:
        ready = self._manager.server_ready and not self._observer.draining
        return json_response({"ready": ready}, 200 if ready else 503)

    async def model_ready(self, request: Request) -> Response:
        name, version = _model(request)
        ready = self._manager.is_ready(name, version)
        return json_response({"name": name, "ready": ready}, 200 if ready else 503)

    async def server_metadata(self, request: Request) -> Response:
        return json_response(
            {"name": self._settings.server_name, "version": __version__, "extensions": EXTENSIONS}
        )

    async def model_metadata(self, request: Request) -> Response:
        return json_response(http_convert.metadata(self._dataplane.metadata(*_model(request))))

    async def model_config(self, request: Request) -> Response:
        config = self._dataplane.config(*_model(request))
        return json_response(json_format.MessageToDict(config, preserving_proto_field_name=True))

    async def statistics(self, request: Request) -> Response:
        name, version = _model(request) if "model" in request.path_params else ("", "")
        stats = await self._dataplane.statistics(name, version)
        return json_response(
            {
                "model_stats": [
                    json_format.MessageToDict(s, preserving_proto_field_name=True) for s in stats
                ]
            }
        )

    # ---- inference ---------------------------------------------------------------------------

    async def infer(self, request: Request) -> Response:
        body = await read_body(request, self._settings.max_message_bytes)
        name, version = _model(request)
        infer_request, all_binary = http_convert.infer_request(
            body, request.headers.get(http_convert.HEADER_LENGTH), name, version
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
        ready_only = bool(_document(body).get("ready", False))
        return json_response(
            [
                {"name": r.name, "version": r.version, "state": r.state, "reason": r.reason}
                for r in await self._manager.repository_index(ready_only)
            ]
        )

    async def load(self, request: Request) -> Response:
        body = await read_body(request, self._settings.max_message_bytes)
        parameters = _document(body).get("parameters") or {}
        config = parameters.get("config") if isinstance(parameters, dict) else None
        if config is not None and not isinstance(config, str):
            config = json.dumps(config)
        await self._manager.control_load(request.path_params["model"], config)
        return json_response({})

    async def unload(self, request: Request) -> Response:
        await self._manager.control_unload(request.path_params["model"])
        return json_response({})


def _error(message: str, request_id: str, status: int) -> Response:
    return json_response({"error": f"{message} (request id {request_id})"}, status)


def _model(request: Request) -> tuple[str, str]:
    return request.path_params["model"], request.path_params.get("version", "")


def _document(body: bytes) -> dict:
    if not body.strip():
        return {}
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"the body is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidInput("the body must be a JSON object")
    return document


def build_app(routes: V2Routes, extra: list[Route] = ()) -> Starlette:
    inference, admin = Scope.INFERENCE, Scope.ADMIN
    model_paths = ("/v2/models/{model}", "/v2/models/{model}/versions/{version}")

    def add(path: str, handler: Handler, rpc: str, scope: Scope | None, method: str) -> Route:
        return Route(path, routes.endpoint(rpc, scope)(handler), methods=[method])

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
    for base in model_paths:
        table += [
            add(base, routes.model_metadata, "ModelMetadata", inference, "GET"),
            add(f"{base}/ready", routes.model_ready, "ModelReady", None, "GET"),
            add(f"{base}/config", routes.model_config, "ModelConfig", inference, "GET"),
            add(f"{base}/infer", routes.infer, "ModelInfer", inference, "POST"),
            add(f"{base}/stats", routes.statistics, "ModelStatistics", admin, "GET"),
        ]
    document = json.dumps(openapi.spec(), separators=(",", ":")).encode()

    async def openapi_json(request: Request) -> Response:
        return Response(document, media_type=JSON)

    table.append(Route("/openapi.json", openapi_json, methods=["GET"]))
    return Starlette(routes=[*table, *extra])
