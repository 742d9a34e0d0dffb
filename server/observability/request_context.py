"""What is known about the request being handled, for logs, metrics and traces: its id, its
RPC, the model version it reached and where its time went. A context variable carries it from
the transport through the data plane (asyncio tasks and `asyncio.to_thread` copy it)."""

from __future__ import annotations

import contextvars
import itertools
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

REQUEST_ID_HEADER = "x-request-id"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")


@dataclass
class RequestRecord:
    rpc: str
    request_id: str
    started_ns: int = field(default_factory=time.perf_counter_ns)
    model: str = ""
    """Set once the request reached a served model: never a name a caller made up."""
    version: str = ""
    queue_ns: int = 0
    compute_ns: int = 0
    batch_items: int = 0
    span: Any = None
    """The request's OpenTelemetry span when tracing is on."""
    code: str = "OK"
    """The outcome: OK, or the error's kind (named as gRPC names its status codes)."""


current: contextvars.ContextVar[RequestRecord | None] = contextvars.ContextVar(
    "deepserve_request", default=None
)


# Made ids: a random prefix per process and a counter, unique without a system call each.
_PREFIX = uuid.uuid4().hex[:16]
_made = itertools.count(1)


def request_id_from(metadata: Any) -> str:
    """The caller's x-request-id when it is a sensible token, else a new one."""
    for key, value in metadata or ():
        if key == REQUEST_ID_HEADER and isinstance(value, str) and _SAFE_ID.match(value):
            return value
    return f"{_PREFIX}{next(_made):016x}"


def note_model(name: str, version: int) -> None:
    record = current.get()
    if record is not None:
        record.model, record.version = name, str(version)


def note_timing(queue_ns: int, compute_ns: int, batch_items: int) -> None:
    record = current.get()
    if record is not None:
        record.queue_ns, record.compute_ns, record.batch_items = queue_ns, compute_ns, batch_items
