"""Tokens and scopes in process: what each token may do, how a token file is read, and which
settings refuse to start."""

from __future__ import annotations

import pytest

from deepserve.server.core.auth import (
    Authenticator,
    ConfigurationError,
    Scope,
    check_exposure,
    parse_token_file,
)
from deepserve.server.protocol.errors import PermissionDenied, Unauthenticated
from deepserve.server.settings import ServerSettings

INFERENCE = "inference-token-0123456789"
ADMIN = "admin-token-0123456789abcdef"


def test_scopes_of_each_token() -> None:
    auth = Authenticator(ServerSettings(inference_token=INFERENCE, admin_token=ADMIN))
    assert auth.enabled
    auth.authorize(f"Bearer {INFERENCE}", Scope.INFERENCE)
    auth.authorize(f"bearer {ADMIN}", Scope.INFERENCE)  # admin implies inference
    auth.authorize(f"Bearer {ADMIN}", Scope.ADMIN)
    with pytest.raises(PermissionDenied, match="needs the 'admin' scope"):
        auth.authorize(f"Bearer {INFERENCE}", Scope.ADMIN)
    with pytest.raises(Unauthenticated, match="requires a bearer token"):
        auth.authorize(None, Scope.INFERENCE)
    with pytest.raises(Unauthenticated, match="must be 'Bearer <token>'"):
        auth.authorize(f"Basic {INFERENCE}", Scope.INFERENCE)
    with pytest.raises(Unauthenticated, match="not valid"):
        auth.authorize(f"Bearer {INFERENCE}x", Scope.INFERENCE)


def test_no_tokens_lets_every_call_through() -> None:
    auth = Authenticator(ServerSettings())
    assert not auth.enabled
    auth.authorize(None, Scope.ADMIN)


def test_token_files_are_checked_line_by_line(tmp_path) -> None:
    tokens = parse_token_file(f"# comment\n\ninference {INFERENCE}\nadmin {ADMIN}\n", "file")
    assert [sorted(scopes) for _, scopes in tokens] == [["inference"], ["admin", "inference"]]
    with pytest.raises(ConfigurationError, match="line 1: expected '<scopes> <token>'"):
        parse_token_file("inference", "file")
    with pytest.raises(ConfigurationError, match="line 1: scopes must be from"):
        parse_token_file(f"root {ADMIN}", "file")
    with pytest.raises(ConfigurationError, match="16 characters or more"):
        parse_token_file("admin short", "file")
    path = tmp_path / "tokens"
    path.write_text(f"admin {ADMIN}\n")
    auth = Authenticator(ServerSettings(token_file=path))
    auth.authorize(f"Bearer {ADMIN}", Scope.ADMIN)


def test_every_interface_without_tokens_refuses_to_start() -> None:
    exposed = ServerSettings(host="0.0.0.0")
    with pytest.raises(ConfigurationError, match=r"refusing to bind 0\.0\.0\.0 with no tokens"):
        check_exposure(exposed, Authenticator(exposed))
    allowed = ServerSettings(host="0.0.0.0", allow_unauthenticated=True)
    check_exposure(allowed, Authenticator(allowed))
    with pytest.raises(ConfigurationError, match="16 characters or more"):
        Authenticator(ServerSettings(inference_token="short"))
