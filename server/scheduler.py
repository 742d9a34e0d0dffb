"""Scheduling requests onto a model's instances.

Each instance is one ONNX Runtime session; a request waits (in arrival order) for a free instance
and runs on a worker thread, so the asyncio loop never blocks (ONNX Runtime releases the GIL).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

from .errors import InferenceFailed, InvalidInput


@dataclass(frozen=True)
class Execution:
    outputs: list[np.ndarray]
    queue_ns: int
    infer_ns: int


def _run_session(
    session: ort.InferenceSession, output_names: Sequence[str], feeds: dict[str, np.ndarray]
) -> tuple[list[np.ndarray], int]:
    start = time.perf_counter_ns()
    try:
        outputs = session.run(list(output_names), feeds)
    except InvalidArgument as exc:
        raise InvalidInput(f"the model rejected the inputs: {exc}") from exc
    except Exception as exc:
        raise InferenceFailed(f"inference failed: {exc}") from exc
    return outputs, time.perf_counter_ns() - start


class InstancePool:
    """A model version's sessions, handed out one request at a time each."""

    def __init__(self, sessions: Sequence[ort.InferenceSession], executor: Executor) -> None:
        self._executor = executor
        self._idle: asyncio.Queue[ort.InferenceSession] = asyncio.Queue()
        for session in sessions:
            self._idle.put_nowait(session)
        self.size = len(sessions)

    async def run(self, feeds: dict[str, np.ndarray], output_names: Sequence[str]) -> Execution:
        loop = asyncio.get_running_loop()
        waited_from = time.perf_counter_ns()
        session = await self._idle.get()
        queue_ns = time.perf_counter_ns() - waited_from
        job = self._executor.submit(_run_session, session, output_names, feeds)
        # The session goes back only when its thread is done, even if the caller gave up.
        job.add_done_callback(lambda _: loop.call_soon_threadsafe(self._idle.put_nowait, session))
        outputs, infer_ns = await asyncio.wrap_future(job)
        return Execution(outputs=outputs, queue_ns=queue_ns, infer_ns=infer_ns)
