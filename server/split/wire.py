"""What crosses between front ends and the engine: a msgpack header frame, then one frame per
numeric tensor holding its bytes as they are (no pickling; ZeroMQ sends a large buffer without
copying it and numpy reads a received frame in place). String tensors travel in the header.

A request is [kind, request_id, *fields]; a reply is [request_id, status, body], where status
is "ok", an ErrorKind name (the body is then the message), or "table" (a push, request_id 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack
import numpy as np

from ..protocol.errors import ErrorKind, ServingError
from ..protocol.types import VersionStatistics

Descriptor = tuple[str, str, list[int], list[str | bytes] | None]
"""(name, numpy dtype string, shape, the elements when the tensor holds strings)."""


def pack(header: Sequence[Any]) -> bytes:
    return msgpack.packb(header, use_bin_type=True)


def unpack(frame: bytes | memoryview) -> list[Any]:
    return msgpack.unpackb(frame, raw=False, use_list=True)


def describe(arrays: dict[str, np.ndarray]) -> tuple[list[Descriptor], list[Any]]:
    """Descriptors for the header, and the frames to send after it."""
    descriptors: list[Descriptor] = []
    frames: list[Any] = []
    for name, array in arrays.items():
        if array.dtype == object:
            items: list[str | bytes] = [
                item if isinstance(item, str) else bytes(item) for item in array.reshape(-1)
            ]
            descriptors.append((name, "O", list(array.shape), items))
            continue
        contiguous = np.ascontiguousarray(array)
        descriptors.append((name, contiguous.dtype.str, list(contiguous.shape), None))
        frames.append(contiguous)  # pyzmq copies what is below its copy threshold
    return descriptors, frames


def arrays(descriptors: list[Descriptor], frames: Sequence[Any]) -> dict[str, np.ndarray]:
    """The arrays back, reading each received frame in place."""
    result: dict[str, np.ndarray] = {}
    position = 0
    for name, dtype, shape, items in descriptors:
        if items is not None:
            array = np.empty(len(items), dtype=object)
            array[:] = items
            result[name] = array.reshape(shape)
            continue
        frame = frames[position]
        position += 1
        buffer = frame.buffer if hasattr(frame, "buffer") else frame
        result[name] = np.frombuffer(buffer, dtype=np.dtype(dtype)).reshape(shape)
    return result


class EngineError(ServingError):
    """An error the engine answered, with its kind kept across the process boundary."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def error_reply(request_id: int, exc: ServingError) -> list[Any]:
    return [request_id, exc.kind.value, exc.message]


def raise_if_error(status: str, body: Any) -> None:
    if status != "ok":
        raise EngineError(ErrorKind(status), str(body))


def statistics_fields(view: VersionStatistics) -> list[Any]:
    """A version's statistics as msgpack takes them (its maps keyed by strings only)."""
    return [
        view.name, view.version, view.last_inference, view.inference_count,
        view.execution_count, view.requests, [[size, d] for size, d in view.batches.items()],
    ]  # fmt: skip


def statistics_from(fields: list[Any]) -> VersionStatistics:
    name, version, last, inferences, executions, requests, batches = fields
    return VersionStatistics(
        name, version, last, inferences, executions,
        {key: (count, ns) for key, (count, ns) in requests.items()},
        {size: {key: (c, ns) for key, (c, ns) in d.items()} for size, d in batches},
    )  # fmt: skip
