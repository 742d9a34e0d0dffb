"""uvicorn (httptools, the server's own event loop) serving the HTTP app next to gRPC, behind
the connection limits and the guard."""

from __future__ import annotations

import contextlib
import math
import socket
import ssl
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette

from ..core.certificates import certificate_names
from ..settings import ServerSettings
from .connections import ConnectionLimits, bounded_protocol
from .guard import Guard, HostGuard


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signals to deepserve, which drains both transports."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    @property
    def port(self) -> int:
        for server in self.servers:
            for sock in server.sockets:
                return sock.getsockname()[1]
        return 0


def allowed_host_names(settings: ServerSettings) -> list[str]:
    """The names Host may carry: the operator's, this machine's, the bound one, the
    certificate's."""
    names = [
        *settings.http_allowed_hosts,
        socket.gethostname(),
        settings.http_host or settings.host,
    ]
    if settings.tls_cert is not None:
        with contextlib.suppress(OSError, ValueError):
            names += certificate_names(settings.tls_cert.read_bytes())
    return names


def http_server(app: Starlette, settings: ServerSettings) -> EmbeddedServer:
    tls: dict = {}
    if settings.tls_cert is not None:
        tls = {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)}
        if settings.tls_client_ca is not None:
            tls |= {"ssl_ca_certs": str(settings.tls_client_ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    guarded = Guard(app, HostGuard(allowed_host_names(settings)), settings.max_message_bytes)
    limits = ConnectionLimits(
        max_connections=settings.http_max_connections,
        max_head_bytes=settings.http_max_header_kb * 1024,
        head_timeout_s=settings.http_header_timeout_s,
    )
    config = uvicorn.Config(
        guarded,
        host=settings.http_host or settings.host,
        port=settings.http_port,
        loop="none",  # the running loop: the server's own
        http=bounded_protocol(limits),
        lifespan="off",
        access_log=False,
        log_config=None,
        server_header=False,
        date_header=False,
        timeout_graceful_shutdown=max(math.ceil(settings.grace_seconds), 1),
        **tls,
    )
    return EmbeddedServer(config)
