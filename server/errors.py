"""Errors the data plane raises; each carries the gRPC status the transports answer with."""

from __future__ import annotations

import grpc


class ServingError(Exception):
    """A request-level failure with the gRPC status code it maps to."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ModelNotFound(ServingError):
    code = grpc.StatusCode.NOT_FOUND


class InvalidInput(ServingError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class ModelUnavailable(ServingError):
    code = grpc.StatusCode.UNAVAILABLE


class InferenceFailed(ServingError):
    code = grpc.StatusCode.INTERNAL


class ServerBusy(ServingError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class ModelLoadError(Exception):
    """Raised while loading a model; the message is the reason shown in RepositoryIndex."""


class Unauthenticated(ServingError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ServingError):
    code = grpc.StatusCode.PERMISSION_DENIED


class LimitExceeded(ServingError):
    """A request past a configured limit: the client must send less, so no retry helps."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class ShuttingDown(ServingError):
    """A call that arrived after SIGTERM: another replica should take it."""

    code = grpc.StatusCode.UNAVAILABLE
