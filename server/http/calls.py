"""Around every HTTP handler, with the gRPC edge's semantics: the request id (taken from
`x-request-id` or made, echoed in a header and in error messages), draining refusals, the
bearer token's scope, the request record that logs, metrics and traces read, and the one
mapping from deepserve's errors to HTTP statuses. Also the body and JSON helpers every route
uses."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from ..core.auth import Authenticator, Scope
from ..observability import request_context
from ..observability.observe import Observer
from ..protocol.errors import InvalidInput, LimitExceeded, ServingError
from ..protocol.numbers import decimal
from ..protocol.status import HTTP_STATUS

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]
JSON = "application/json"
# Tensors nest a level a dimension inside a few objects: 64 is far beyond any of them.
MAX_JSON_DEPTH = 64
MAX_JSON_BYTES = 8 << 20


def json_response(document: Any, status: int = 200, headers: dict | None = None) -> Response:
    body = json.dumps(document, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type=JSON, headers=headers)


def _depth(body: bytes) -> int:
    brackets = np.frombuffer(body, np.uint8)
    steps = np.zeros(len(brackets), np.int8)
    steps[(brackets == ord("[")) | (brackets == ord("{"))] = 1
    steps[(brackets == ord("]")) | (brackets == ord("}"))] = -1
    return int(np.cumsum(steps, dtype=np.int32).max(initial=0))


def parse_json(
    body: bytes, what: str, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH
) -> Any:
    """A JSON document, refused (INVALID_ARGUMENT) when it is larger than `max_bytes` (Python's
    parser holds the interpreter for the whole document, so its size is what bounds the stall),
    is not JSON, or nests deeper than `max_depth` (counted over every bracket, before the
    parser recurses)."""
    if len(body) > max_bytes:
        raise LimitExceeded(
            f"{what} is {len(body)} bytes of JSON, more than this server's limit of {max_bytes} "
            "(max_json_mb); send large tensors with the binary data extension"
        )
    depth = _depth(body) if body.count(b"[") + body.count(b"{") > max_depth else 0
    if depth > max_depth:
        raise InvalidInput(
            f"{what} nests {depth} levels deep, more than this server's limit of {max_depth}"
        )
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidInput(f"{what} is not JSON: {str(exc)[:200]}") from None


def refuse_declared_length(request: Request, limit: int) -> None:
    """Refuse a body whose Content-Length is past `limit`, before any of it is read."""
    declared = request.headers.get("content-length", "")
    if (decimal(declared) or 0) > limit:
        raise LimitExceeded(
            f"the body of {declared} bytes is larger than this server's limit of {limit} "
            "bytes (max_message_mb)"
        )


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused past `limit` bytes before it is all read (Content-Length or not)."""
    refuse_declared_length(request, limit)
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
                    await observer.refuse_if_draining()
                    self._auth.authorize(request.headers.get("authorization"), scope)
                response = await handler(request)
            except asyncio.CancelledError:  # the client went away
                record.code = "CANCELLED"
                raise
            except ServingError as error:
                record.code = error.kind.value
                response = _error(error.message, request_id, HTTP_STATUS[error.kind])
            except RecursionError:  # a client's document nested past what Python walks
                record.code = "INVALID_ARGUMENT"
                response = _error("the request is nested too deeply", request_id, 400)
            except Exception as error:  # a bug: logged, answered without details
                log.exception("unexpected error while handling a request")
                record.code = "INTERNAL"
                response = _error(f"internal error: {type(error).__name__}", request_id, 500)
        response.headers["x-request-id"] = request_id
        return response


def _error(message: str, request_id: str, status: int) -> Response:
    return json_response({"error": f"{message} (request id {request_id})"}, status)
