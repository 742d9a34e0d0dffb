"""Log setup: every line about a request carries its id; `--log-format json` writes one JSON
object a line with stable field names:

    time (UTC, ISO 8601), level, logger, message, request_id (when about a request), and for
    access and slow-request lines: rpc, model, version, code, duration_ms, queue_ms,
    compute_ms, batch_size. In a split server every line also names its process (supervisor,
    engine, frontend-N) and pid; text lines name the process in brackets.
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any

from . import request_context


class RequestIdFilter(logging.Filter):
    """Adds the current request's id to records that do not carry one already."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            current = request_context.current.get()
            record.request_id = current.request_id if current is not None else ""
        return True


class TextFormatter(logging.Formatter):
    def __init__(self, process: str = "") -> None:
        where = f"[{process}] " if process else ""
        super().__init__(f"%(asctime)s %(levelname)s {where}%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request_id = getattr(record, "request_id", "")
        return f"{text} [request {request_id}]" if request_id else text


class JsonFormatter(logging.Formatter):
    def __init__(self, process: str = "") -> None:
        super().__init__()
        self._process = process

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self._process:
            entry["process"], entry["pid"] = self._process, record.process
        request_id = getattr(record, "request_id", "")
        if request_id:
            entry["request_id"] = request_id
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup(level: str, log_format: str, process: str = "") -> None:
    """`process`: which process of a split server this is (empty for a single process)."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    handler.setFormatter(formatter(process))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
