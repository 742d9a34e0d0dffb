"""Around every HTTP handler, with the gRPC edge's semantics: the request id (taken from
`x-request-id` or made, echoed in a header and in error messages), draining refusals, the
bearer token's scope, the request record that logs, metrics and traces read, and the one
mapping from deepserve's errors to HTTP statuses. Also the body and JSON helpers every route
uses."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..core.auth import Authenticator, Scope
from ..observability import request_context
from ..observability.observe import Observer
from ..protocol.errors import LimitExceeded, ServingError
from ..protocol.status import HTTP_STATUS

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


class CallWrapper:
    """`endpoint(rpc, scope)` wraps a route handler; scope None: open (health probes)."""

    def __init__(self, observer: Observer, auth: Authenticator) -> None:
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
        with observer.call(rpc, request_id, request.headers.items(), "http") as record:
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


def _error(message: str, request_id: str, status: int) -> Response:
    return json_response({"error": f"{message} (request id {request_id})"}, status)
