"""Numbers in text that a client or a config sends: `str.isdigit` accepts superscripts and
other scripts' digits that `int` then refuses, and `int` of thousands of digits is slow or
refused, so both turn a client's mistake into a server error. One check for all of them."""

from __future__ import annotations

MAX_DIGITS = 18  # fits an int64


def decimal(text: str) -> int | None:
    """The value of `text` if it is ASCII digits only (at most 18 of them), else None."""
    if 0 < len(text) <= MAX_DIGITS and text.isascii() and text.isdigit():
        return int(text)
    return None
