"""Errors the core raises. Each has a kind; the transports turn kinds into gRPC status codes
and HTTP statuses with one table (server/protocol/status.py), so nothing here knows a wire."""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    """What went wrong, named as gRPC names its status codes."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    UNAVAILABLE = "UNAVAILABLE"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    INTERNAL = "INTERNAL"


class ServingError(Exception):
    """A request-level failure of a kind the transports know how to answer."""

    kind: ErrorKind = ErrorKind.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ModelNotFound(ServingError):
    kind = ErrorKind.NOT_FOUND


class InvalidInput(ServingError):
    kind = ErrorKind.INVALID_ARGUMENT


class AlreadyExists(ServingError):
    kind = ErrorKind.ALREADY_EXISTS


class ModelUnavailable(ServingError):
    kind = ErrorKind.UNAVAILABLE


class InferenceFailed(ServingError):
    kind = ErrorKind.INTERNAL


class ServerBusy(ServingError):
    kind = ErrorKind.RESOURCE_EXHAUSTED


class Unauthenticated(ServingError):
    kind = ErrorKind.UNAUTHENTICATED


class PermissionDenied(ServingError):
    kind = ErrorKind.PERMISSION_DENIED


class LimitExceeded(ServingError):
    """A request past a configured limit: the client must send less, so no retry helps."""

    kind = ErrorKind.INVALID_ARGUMENT


class ShuttingDown(ServingError):
    """A call that arrived after SIGTERM: another replica should take it."""

    kind = ErrorKind.UNAVAILABLE


class TaskNotSupported(ServingError):
    """The model cannot do the task asked of it (no task parameters, another task)."""

    kind = ErrorKind.FAILED_PRECONDITION


class QueueTimeout(ServingError):
    kind = ErrorKind.UNAVAILABLE


class DeadlineExceeded(ServingError):
    kind = ErrorKind.DEADLINE_EXCEEDED


class ModelLoadError(Exception):
    """Raised while loading a model; the message is the reason shown in RepositoryIndex."""
