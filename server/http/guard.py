"""In front of every HTTP route: the body limit however the body is framed (Content-Length,
chunked, multipart), and the checks that keep web pages a person visits away from the API.

A page on another site can make a browser send requests here: POSTs without a body or with a
text body need no CORS preflight, so they reach the server even though the page cannot read the
answer (that was enough to unload models on a developer's laptop), and a DNS-rebinding page
sends requests with its own host name in `Host` and reads the answers. Browsers always say where
a cross-site request comes from (`Origin`, `Sec-Fetch-Site`), and a rebinding page cannot change
`Host`: requests from another origin are refused, and so are host names the server does not
answer to (addresses are always accepted: rebinding needs a name)."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..protocol.errors import LimitExceeded

LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def _hostname(authority: str) -> str:
    """`host:port`, `[v6]:port` or a bare host, lower case and without the port."""
    authority = authority.strip().lower()
    if authority.startswith("["):
        return authority[1 : authority.find("]")] if "]" in authority else authority
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class HostGuard:
    def __init__(self, allowed_names: Iterable[str]) -> None:
        names = {name.lower().rstrip(".") for name in allowed_names if name}
        self.any_host = "*" in names
        self.names = frozenset(names | set(LOOPBACK_NAMES))

    def _names(self, name: str) -> bool:
        if name in self.names:
            return True
        parent = name.split(".", 1)[-1]  # '*.example.com' names one more label
        if "." in name and f"*.{parent}" in self.names:
            return True
        # '.svc.cluster.local' names that domain and every name under it
        return any(f".{name}".endswith(suffix) for suffix in self.names if suffix[:1] == ".")

    def refusal(self, headers: dict[bytes, bytes]) -> str | None:
        """Why a request with these headers is refused, or None."""
        host = headers.get(b"host", b"").decode("latin-1")
        origin = headers.get(b"origin", b"").decode("latin-1")
        site = headers.get(b"sec-fetch-site", b"").decode("latin-1").lower()
        name = _hostname(host).rstrip(".")
        if not (self.any_host or _is_address(name) or self._names(name)):
            return (
                f"this server does not answer to the host name '{name[:100]}' (add it with "
                "--http-allowed-host)"
            )
        if site == "cross-site":
            return "requests from another site are refused (Sec-Fetch-Site: cross-site)"
        if origin and origin != "null" and origin.split("://", 1)[-1].lower() != host.lower():
            return f"requests from another origin ({origin[:100]}) are refused"
        if origin == "null":  # sandboxed frames, file: pages, redirects across origins
            return "requests from an opaque origin (Origin: null) are refused"
        return None


class Guard:
    """ASGI middleware: the host and origin checks, then the body limit on every request."""

    def __init__(self, app: ASGIApp, hosts: HostGuard, max_body_bytes: int) -> None:
        self._app = app
        self._hosts = hosts
        self._max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        reason = self._hosts.refusal(dict(scope["headers"]))
        if reason is not None:
            await _answer(send, 403, reason)
            return
        received = 0
        limit = self._max_body

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise LimitExceeded(
                        f"the body is larger than this server's limit of {limit} bytes "
                        "(max_message_mb)"
                    )
            return message

        await self._app(scope, bounded_receive, send)


async def _answer(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
