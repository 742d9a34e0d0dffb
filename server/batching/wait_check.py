"""Whether a request can be served in time, judged when it arrives: the bounds it must be
served within (the server's longest queue wait, its queue timeout when that rejects, its
deadline) against the work queued ahead of it. Used by a version's scheduler and by a split
server's front ends, which judge from the engine's last word on its queue."""

from __future__ import annotations

from ..protocol.errors import ServerBusy
from .queue import US, QueuePolicy


def wait_limit(
    max_wait_ns: float, policy: QueuePolicy, timeout_us: int, deadline_s: float | None
) -> tuple[float, str] | None:
    """The shortest bound on a request's wait (ns) and what it is; None when none applies."""
    bounds = []
    if max_wait_ns:
        bounds.append((max_wait_ns, "the longest queue wait (max_queue_wait_ms)"))
    if timeout_us and not policy.delay_on_timeout:
        bounds.append((timeout_us * US, "its queue timeout"))
    if deadline_s is not None:
        bounds.append((deadline_s * 1e9, "its deadline"))
    return min(bounds) if bounds else None


def refuse_if_late(model: str, ahead: str, wait_ns: float, limit: tuple[float, str] | None) -> None:
    """ServerBusy when `wait_ns` of work (`ahead` says what it is) is past the limit."""
    if limit is None:
        return
    limit_ns, what = limit
    if wait_ns > limit_ns:
        raise ServerBusy(
            f"model '{model}' cannot serve this request in time: {ahead}, about "
            f"{wait_ns / 1e6:.0f} ms of work, past {what} of {limit_ns / 1e6:.0f} ms; "
            "try again later"
        )
