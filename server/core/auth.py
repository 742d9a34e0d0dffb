"""Bearer tokens with scopes, checked the same way by every transport.

Two scopes, in the spirit of Triton's restricted protocols: `inference` (predictions, metadata,
the repository index) and `admin` (repository control, statistics, log and trace settings; an
admin token may infer too). Health and readiness stay open for probes. Tokens come from
DEEPSERVE_INFERENCE_TOKEN / DEEPSERVE_ADMIN_TOKEN and from a token file that is re-read when it
changes, so a token can be rotated without a restart. Every presented token is compared with
every known token in constant time.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from enum import StrEnum
from pathlib import Path

from ..protocol.errors import PermissionDenied, Unauthenticated
from ..settings import LOOPBACK_HOSTS, ServerSettings

log = logging.getLogger(__name__)

RELOAD_CHECK_SECONDS = 1.0
MIN_TOKEN_CHARS = 24
"""`openssl rand -hex 12` and up; shorter ones are refused at start."""
KNOWN_TOKENS = frozenset(
    {
        # Printed as examples in this project's docs before: anyone may have read them.
        "6f1c0e9f3a0d4b7e8c2a5d1b9e4f7a3c",
        "0d9b8c7a6e5f4d3c2b1a0f9e8d7c6b5a",
    }
)


class Scope(StrEnum):
    INFERENCE = "inference"
    ADMIN = "admin"


Tokens = tuple[tuple[bytes, frozenset[Scope]], ...]


class ConfigurationError(Exception):
    """Settings that cannot work together; the server refuses to start and says why."""


def parse_token_file(text: str, source: str) -> Tokens:
    """Lines of '<scope>[,<scope>] <token>'; blank lines and '#' comments are skipped."""
    tokens: list[tuple[bytes, frozenset[Scope]]] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ConfigurationError(
                f"{source} line {number}: expected '<scopes> <token>', e.g. 'inference s3cret'"
            )
        names, token = parts
        try:
            scopes = frozenset(Scope(name) for name in names.split(","))
        except ValueError:
            raise ConfigurationError(
                f"{source} line {number}: scopes must be from {[s.value for s in Scope]}, got "
                f"'{names}'"
            ) from None
        problem = weak_token(token)
        if problem:
            raise ConfigurationError(f"{source} line {number}: {problem}")
        tokens.append((token.encode(), _with_implied(scopes)))
    return tuple(tokens)


def weak_token(token: str) -> str:
    """Why a token may not be used ("" when it may)."""
    if len(token) < MIN_TOKEN_CHARS:
        return (
            f"tokens need {MIN_TOKEN_CHARS} characters or more (make one with "
            "`openssl rand -hex 24`)"
        )
    if token in KNOWN_TOKENS:
        return "this token was printed in deepserve's documentation: make your own"
    return ""


def _with_implied(scopes: frozenset[Scope]) -> frozenset[Scope]:
    return scopes | {Scope.INFERENCE} if Scope.ADMIN in scopes else scopes


class Authenticator:
    """Answers whether an `authorization` header grants a scope; raises when it does not."""

    def __init__(self, settings: ServerSettings) -> None:
        self._fixed: list[tuple[bytes, frozenset[Scope]]] = []
        for value, scope in (
            (settings.inference_token, Scope.INFERENCE),
            (settings.admin_token, Scope.ADMIN),
        ):
            if value:
                problem = weak_token(value)
                if problem:
                    raise ConfigurationError(f"the {scope.value} token: {problem}")
                self._fixed.append((value.encode(), _with_implied(frozenset({scope}))))
        self._file = settings.token_file
        self._file_tokens: Tokens = ()
        self._file_stamp: tuple[int, int] | None = None
        self._next_check = 0.0
        self._lock = threading.Lock()
        if self._file is not None:
            self._reload(first=True)
            _warn_if_others_may_read(self._file)
        self.enabled = bool(self._fixed) or self._file is not None

    def _reload(self, first: bool = False) -> None:
        assert self._file is not None
        try:
            stat = self._file.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp == self._file_stamp:
                return
            tokens = parse_token_file(self._file.read_text(encoding="utf-8"), "token file")
        except (OSError, UnicodeDecodeError, ConfigurationError) as exc:
            if first:
                raise ConfigurationError(f"cannot read the token file: {exc}") from exc
            log.error("token file not reloaded, the previous tokens stay: %s", exc)
            return
        self._file_tokens, self._file_stamp = tokens, stamp
        if not first:
            log.info("token file reloaded: %d token(s)", len(tokens))

    def _tokens(self) -> list[tuple[bytes, frozenset[Scope]]]:
        if self._file is not None and time.monotonic() >= self._next_check:
            with self._lock:
                if time.monotonic() >= self._next_check:
                    self._reload()
                    self._next_check = time.monotonic() + RELOAD_CHECK_SECONDS
        return [*self._fixed, *self._file_tokens]

    def scopes_of(self, presented: bytes) -> frozenset[Scope]:
        granted: frozenset[Scope] = frozenset()
        for token, scopes in self._tokens():
            # No early exit: the time taken does not say which token (or how much of one) matched.
            if hmac.compare_digest(presented, token):
                granted = granted | scopes
        return granted

    def authorize(self, header: str | None, needed: Scope) -> None:
        """Raises Unauthenticated (no or unknown token) or PermissionDenied (scope missing)."""
        if not self.enabled:
            return
        if not header:
            raise Unauthenticated(
                "this server requires a bearer token: send 'authorization: Bearer <token>' (an "
                "HTTP header, or gRPC metadata)"
            )
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthenticated("the authorization header must be 'Bearer <token>'")
        scopes = self.scopes_of(value.strip().encode())
        if not scopes:
            raise Unauthenticated("the bearer token is not valid")
        if needed not in scopes:
            raise PermissionDenied(
                f"this call needs the '{needed.value}' scope; the token has "
                f"{sorted(scope.value for scope in scopes)}"
            )


def _warn_if_others_may_read(path: Path) -> None:
    mode = path.stat().st_mode
    if mode & 0o077:
        log.warning(
            "the token file can be read by other users of this host (mode %o): chmod 600 %s",
            mode & 0o777,
            path.name,
        )


def check_exposure(settings: ServerSettings, auth: Authenticator) -> None:
    """Refuse to serve every interface with no credentials unless the operator says so."""
    if settings.binds_loopback_only or auth.enabled or settings.allow_unauthenticated:
        return
    http_host = (settings.http_host or settings.host) if settings.http_port else settings.host
    exposed = settings.host if settings.host not in LOOPBACK_HOSTS else f"HTTP on {http_host}"
    raise ConfigurationError(
        f"refusing to bind {exposed} with no tokens: anyone who can reach the port could "
        "use it. Set DEEPSERVE_INFERENCE_TOKEN / DEEPSERVE_ADMIN_TOKEN or --token-file, bind "
        "127.0.0.1, or pass --allow-unauthenticated (for a private network)"
    )
