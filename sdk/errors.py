"""What the SDK raises: one exception per kind of failure, mapped from gRPC status codes."""

from __future__ import annotations

import grpc


class DeepserveError(Exception):
    """Any failure of a call to a deepserve server. `code` is the gRPC status code."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class ModelNotFoundError(DeepserveError):
    """No such model or version on the server (NOT_FOUND)."""


class InvalidInputError(DeepserveError):
    """The server rejected the input: wrong image, shape, dtype, ... (INVALID_ARGUMENT,
    FAILED_PRECONDITION)."""


class ServerBusyError(DeepserveError):
    """The model's queue is full (RESOURCE_EXHAUSTED); retried with backoff before raising."""


class DeadlineExceededError(DeepserveError):
    """The call took longer than its timeout (DEADLINE_EXCEEDED)."""


class UnavailableError(DeepserveError):
    """No server answered, or the model is not ready (UNAVAILABLE); retried before raising."""


class AuthenticationError(DeepserveError):
    """No token, or one the server does not know (UNAUTHENTICATED)."""


class PermissionDeniedError(DeepserveError):
    """The token lacks the scope this call needs, or the server refuses it by configuration
    (PERMISSION_DENIED)."""


_BY_CODE: dict[grpc.StatusCode, type[DeepserveError]] = {
    grpc.StatusCode.NOT_FOUND: ModelNotFoundError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidInputError,
    grpc.StatusCode.FAILED_PRECONDITION: InvalidInputError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ServerBusyError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
}

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})


def from_rpc_error(error: grpc.RpcError) -> DeepserveError:
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else str(error)
    kind = _BY_CODE.get(code, DeepserveError) if code is not None else DeepserveError
    name = code.name if code is not None else "UNKNOWN"
    return kind(f"{name}: {details}", code)


def from_status(name: str, message: str) -> DeepserveError:
    """An error a stream answered in its error_message, with the status code the server named
    (in the response's `error_code` parameter)."""
    code = getattr(grpc.StatusCode, name, None) if name else None
    kind = _BY_CODE.get(code, DeepserveError) if code is not None else DeepserveError
    return kind(f"{name or 'UNKNOWN'}: {message}", code)
