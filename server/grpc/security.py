"""The gRPC side of security: which scope each method needs, the interceptor that checks the
bearer token, and TLS / mutual TLS credentials whose files are re-read when they change."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from ..core.auth import Authenticator, ConfigurationError, Scope
from ..protocol.errors import ServingError
from ..settings import ServerSettings
from .calls import GRPC_CODE, fail

log = logging.getLogger(__name__)

V2 = "/inference.GRPCInferenceService/"
OPEN_METHODS = frozenset({V2 + "ServerLive", V2 + "ServerReady", V2 + "ModelReady"})
OPEN_PREFIXES = ("/grpc.health.v1.Health/",)
ADMIN_METHODS = frozenset(
    V2 + name
    for name in (
        "RepositoryModelLoad",
        "RepositoryModelUnload",
        "ModelStatistics",
        "LogSettings",
        "TraceSetting",
        "SystemSharedMemoryStatus",
        "SystemSharedMemoryRegister",
        "SystemSharedMemoryUnregister",
        "CudaSharedMemoryStatus",
        "CudaSharedMemoryRegister",
        "CudaSharedMemoryUnregister",
    )
)


def scope_of(method: str) -> Scope | None:
    """The scope a gRPC method needs; None for the open health and readiness methods."""
    if method in OPEN_METHODS or method.startswith(OPEN_PREFIXES):
        return None
    return Scope.ADMIN if method in ADMIN_METHODS else Scope.INFERENCE


def _denying(handler: grpc.RpcMethodHandler, error: ServingError) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler` that answers `error` without running it."""

    async def deny(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        fail(context, GRPC_CODE[error.kind], error.message)

    serializers = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny, **serializers)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny, **serializers)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny, **serializers)
    return grpc.unary_unary_rpc_method_handler(deny, **serializers)


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Checks each call's `authorization` metadata against the scope its method needs."""

    def __init__(self, auth: Authenticator) -> None:
        self._auth = auth

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        scope = scope_of(details.method)
        if scope is None:
            return await continuation(details)
        header = next(
            (value for key, value in details.invocation_metadata or () if key == "authorization"),
            None,
        )
        try:
            self._auth.authorize(header, scope)
        except ServingError as error:
            handler = await continuation(details)
            return _denying(handler, error) if handler is not None else handler
        return await continuation(details)


class _CertificateFiles:
    """Serves the current certificate configuration; a changed file takes effect at the next
    handshake, so certificates rotate without a restart."""

    def __init__(self, cert: Path, key: Path, client_ca: Path | None) -> None:
        self._paths = [p for p in (cert, key, client_ca) if p is not None]
        self._cert, self._key, self._client_ca = cert, key, client_ca
        self._stamp = self._stamp_now()
        self.initial = self._configuration()

    def _stamp_now(self) -> tuple[tuple[int, int], ...]:
        return tuple((p.stat().st_mtime_ns, p.stat().st_size) for p in self._paths)

    def _configuration(self) -> Any:
        return grpc.ssl_server_certificate_configuration(
            [(self._key.read_bytes(), self._cert.read_bytes())],
            root_certificates=self._client_ca.read_bytes() if self._client_ca else None,
        )

    def fetch(self) -> Any:
        try:
            stamp = self._stamp_now()
            if stamp == self._stamp:
                return None
            configuration = self._configuration()
        except OSError as exc:
            log.error("TLS files not reloaded, the previous certificate stays: %s", exc)
            return None
        self._stamp = stamp
        log.info("TLS certificate files changed: new connections use them")
        return configuration


def server_credentials(settings: ServerSettings) -> grpc.ServerCredentials | None:
    """TLS credentials from the settings, or None for plaintext."""
    if settings.tls_cert is None:
        if settings.tls_key is not None or settings.tls_client_ca is not None:
            raise ConfigurationError("--tls-key and --tls-client-ca need --tls-cert")
        return None
    if settings.tls_key is None:
        raise ConfigurationError("--tls-cert needs --tls-key")
    try:
        files = _CertificateFiles(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
    except OSError as exc:
        raise ConfigurationError(f"cannot read the TLS files: {exc}") from exc
    return grpc.dynamic_ssl_server_credentials(
        files.initial,
        files.fetch,
        require_client_authentication=settings.tls_client_ca is not None,
    )
