"""uvicorn (httptools, the server's own event loop) serving the HTTP app next to gRPC."""

from __future__ import annotations

import contextlib
import math
import ssl
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette

from ..settings import ServerSettings


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


def http_server(app: Starlette, settings: ServerSettings) -> EmbeddedServer:
    tls: dict = {}
    if settings.tls_cert is not None:
        tls = {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)}
        if settings.tls_client_ca is not None:
            tls |= {"ssl_ca_certs": str(settings.tls_client_ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    config = uvicorn.Config(
        app,
        host=settings.http_host or settings.host,
        port=settings.http_port,
        loop="none",  # the running loop: the server's own
        http="httptools",
        lifespan="off",
        access_log=False,
        log_config=None,
        server_header=False,
        date_header=False,
        timeout_graceful_shutdown=max(math.ceil(settings.grace_seconds), 1),
        **tls,
    )
    return EmbeddedServer(config)
