"""A port several processes accept on: bound with SO_REUSEPORT, the kernel spreads the
connections over the listening sockets (a split server's front ends)."""

from __future__ import annotations

import socket

from ..core.auth import ConfigurationError


def shared_port(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port (0: a free port) with SO_REUSEPORT, not listening yet."""
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    bound = socket.socket(family, socket.SOCK_STREAM)
    bound.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    bound.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        bound.bind((host, port))
    except OSError as exc:
        bound.close()
        raise ConfigurationError(f"cannot bind {host}:{port}: {exc.strerror}") from exc
    return bound
