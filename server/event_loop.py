"""Running the server's coroutine on uvloop (less CPU per request) or asyncio."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("deepserve")


def run(main: Coroutine[Any, Any, None], choice: str) -> None:
    """`auto` takes uvloop when it is installed; `uvloop` insists on it; `asyncio` never."""
    if choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise
        else:
            log.info("event loop: uvloop")
            uvloop.run(main)
            return
    log.info("event loop: asyncio")
    asyncio.run(main)
