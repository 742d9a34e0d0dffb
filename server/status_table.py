"""The one table from deepserve's error kinds to gRPC status codes and HTTP statuses, used by
the transports at the edge."""

from __future__ import annotations

import grpc

from .errors import ErrorKind

GRPC_CODE: dict[ErrorKind, grpc.StatusCode] = {
    kind: grpc.StatusCode[kind.value] for kind in ErrorKind
}

HTTP_STATUS: dict[ErrorKind, int] = {
    ErrorKind.INVALID_ARGUMENT: 400,
    ErrorKind.FAILED_PRECONDITION: 400,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.PERMISSION_DENIED: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.RESOURCE_EXHAUSTED: 429,
    ErrorKind.INTERNAL: 500,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.DEADLINE_EXCEEDED: 504,
}
