"""The host and origin checks in process: which Host names are answered, which origins are
refused, and the numbers in text that used to become server errors."""

from __future__ import annotations

import pytest

from deepserve.server.http.guard import HostGuard
from deepserve.server.protocol.numbers import decimal

GUARD = HostGuard(["deepserve", ".svc.cluster.local", "*.example.com"])


@pytest.mark.parametrize(
    "host",
    ["localhost", "localhost:8000", "127.0.0.1:8000", "10.1.2.3", "[::1]:8000", "deepserve:8000",
     "a.b.svc.cluster.local", "x.example.com", "DeepServe"],
)  # fmt: skip
def test_addresses_and_known_names_are_answered(host: str) -> None:
    assert GUARD.refusal({b"host": host.encode()}) is None


@pytest.mark.parametrize("host", ["evil.example", "a.x.example.com", "deepserve.evil", ""])
def test_other_names_are_refused(host: str) -> None:
    assert "--http-allowed-host" in (GUARD.refusal({b"host": host.encode()}) or "")


def test_cross_origin_requests_are_refused() -> None:
    same = {b"host": b"localhost:8000", b"origin": b"http://localhost:8000"}
    assert GUARD.refusal(same) is None
    assert GUARD.refusal({**same, b"sec-fetch-site": b"same-origin"}) is None
    assert "another origin" in str(GUARD.refusal({**same, b"origin": b"http://evil.example"}))
    assert "opaque origin" in str(GUARD.refusal({**same, b"origin": b"null"}))
    assert "another site" in str(GUARD.refusal({**same, b"sec-fetch-site": b"cross-site"}))
    assert HostGuard(["*"]).refusal({b"host": b"anything.example"}) is None


def test_numbers_in_text_are_ascii_digits_only() -> None:
    assert decimal("42") == 42 and decimal("007") == 7
    for text in ["", "²", "٣", "-1", "1.0", " 1", "9" * 19]:
        assert decimal(text) is None, text
