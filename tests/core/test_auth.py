"""Tokens and scopes in process: what each token may do, how a token file is read, and which
settings refuse to start."""

from __future__ import annotations

import pytest

from deepserve.server.core.auth import (
    KNOWN_TOKENS,
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
    with pytest.raises(ConfigurationError, match="24 characters or more"):
        parse_token_file("admin short", "file")
    path = tmp_path / "tokens"
    path.write_text(f"admin {ADMIN}\n")
    auth = Authenticator(ServerSettings(token_file=path))
    auth.authorize(f"Bearer {ADMIN}", Scope.ADMIN)


def test_every_interface_without_tokens_refuses_to_start() -> None:
    exposed = ServerSettings(host="0.0.0.0")
    with pytest.raises(ConfigurationError, match=r"refusing to bind 0\.0\.0\.0 with no tokens"):
        check_exposure(exposed, Authenticator(exposed))
    http_exposed = ServerSettings(http_host="0.0.0.0")
    with pytest.raises(ConfigurationError, match=r"refusing to bind HTTP on 0\.0\.0\.0"):
        check_exposure(http_exposed, Authenticator(http_exposed))
    http_off = ServerSettings(http_host="0.0.0.0", http_port=0)
    check_exposure(http_off, Authenticator(http_off))
    allowed = ServerSettings(host="0.0.0.0", allow_unauthenticated=True)
    check_exposure(allowed, Authenticator(allowed))
    with pytest.raises(ConfigurationError, match="24 characters or more"):
        Authenticator(ServerSettings(inference_token="short"))


def test_known_and_short_tokens_are_refused_and_loose_files_warned(tmp_path, caplog) -> None:
    for known in sorted(KNOWN_TOKENS):
        with pytest.raises(ConfigurationError, match="printed in deepserve's documentation"):
            Authenticator(ServerSettings(admin_token=known))
        with pytest.raises(ConfigurationError, match="line 1: this token was printed"):
            parse_token_file(f"inference {known}", "file")
    with pytest.raises(ConfigurationError, match=r"the inference token: tokens need 24"):
        Authenticator(ServerSettings(inference_token="x" * 23))
    path = tmp_path / "tokens"
    path.write_text(f"admin {ADMIN}\n")
    path.chmod(0o644)
    with caplog.at_level("WARNING"):
        Authenticator(ServerSettings(token_file=path))
    assert "can be read by other users of this host (mode 644): chmod 600 tokens" in caplog.text
    caplog.clear()
    path.chmod(0o600)
    Authenticator(ServerSettings(token_file=path))
    assert "other users" not in caplog.text


def test_scope_errors_name_scopes_plainly() -> None:
    auth = Authenticator(ServerSettings(inference_token=INFERENCE))
    with pytest.raises(PermissionDenied) as refused:
        auth.authorize(f"Bearer {INFERENCE}", Scope.ADMIN)
    assert refused.value.message == (
        "this call needs the 'admin' scope; the token has ['inference']"
    )
    with pytest.raises(Unauthenticated, match="an HTTP header, or gRPC metadata"):
        auth.authorize(None, Scope.INFERENCE)
