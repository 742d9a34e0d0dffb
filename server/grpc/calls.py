"""Around every gRPC handler: the request id (taken from `x-request-id` or made, echoed in the
trailing metadata and in error messages), the request record that logs, metrics and traces
read, and the one mapping from deepserve's errors to gRPC status codes."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from ..observability import request_context
from ..observability.observe import Observer
from ..protocol.errors import ErrorKind, ServingError
from .admission import RequestBytes

log = logging.getLogger(__name__)

GRPC_CODE: dict[ErrorKind, grpc.StatusCode] = {
    kind: grpc.StatusCode[kind.value] for kind in ErrorKind
}
"""Each error kind's status code: kinds are named as gRPC names its codes."""

Response = TypeVar("Response")
Handler = Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Response]]


def error_status(exc: Exception) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, ServingError):
        return GRPC_CODE[exc.kind], exc.message
    log.exception("unexpected error while handling a request")
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}"


def fail(
    context: grpc.aio.ServicerContext,
    status: grpc.StatusCode,
    message: str,
    trailer: tuple[tuple[str, str], ...] = (),
) -> None:
    """Answer a failed status when the handler returns. Not `context.abort`: the exception it
    raises holds the handler's frames, and with them the request (up to the message limit), in
    a reference cycle until the collector happens to run; rounds of large refused requests
    left the server gigabytes larger."""
    context.set_code(status)
    context.set_details(message)
    if trailer:
        context.set_trailing_metadata(trailer)


def with_request_id(message: str, request_id: str) -> str:
    return f"{message} (request id {request_id})"


def observed(method: Handler[Response]) -> Handler[Response]:
    """Wraps a servicer method (whose class has `_observer`): errors become statuses with
    the request id in their message; every call is counted, logged and traced once."""
    rpc = method.__name__

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Response:
        observer: Observer = self._observer
        metadata = context.invocation_metadata()
        request_id = request_context.request_id_from(metadata)
        trailer = ((request_context.REQUEST_ID_HEADER, request_id),)
        budget: RequestBytes | None = getattr(self, "_request_bytes", None)
        with observer.call(rpc, request_id, metadata) as record:
            try:
                await observer.refuse_if_draining()
                if budget is None or not isinstance(request, Message):
                    response = await method(self, request, context)
                else:
                    with budget.hold(context.peer(), request.ByteSize()):
                        response = await method(self, request, context)
            except asyncio.CancelledError:  # the client left, its deadline passed, or a stop
                record.code = "CANCELLED"
                raise
            except Exception as exc:
                status, message = error_status(exc)
                record.code = status.name
            else:
                context.set_trailing_metadata(trailer)
                return response
        fail(context, status, with_request_id(message, request_id), trailer)
        return None  # type: ignore[return-value]  # gRPC sends no message with a failed status

    return wrapper
