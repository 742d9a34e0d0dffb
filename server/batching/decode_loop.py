"""The decode loop of a text generator (an encoder graph and a one-step decoder graph): the
server runs the loop, and at every step the answers under way share one batch.

With `continuous` batching a request that arrives while others are mid-answer is encoded and
joins the step batch at the next step, and an answer that ends leaves it at once (what vLLM
does for language models). With `request` batching a batch is formed from the queue only when
the last one has ended and runs until its longest answer ends: an answer that ends sooner
is sent, but its row stays in the batch, and new requests wait for the next batch. That is
what a model running its whole decode loop in one call gets from a dynamic batcher (tokens
still stream here); it is kept for comparison.

The step batch is kept stacked: each step input's rows in answer order, compacted when answers
leave and extended when they join, so a step is one ONNX Runtime run with no per-step merge.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort

from ..observability.histograms import VersionHistograms
from ..protocol.errors import DeadlineExceeded, InvalidInput, ModelUnavailable, ServerBusy
from ..protocol.sequence_config import SequenceStep
from .instance import _invoke
from .scheduler import JobResult
from .stats import ModelStats, RequestTiming

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopGraphs:
    """The two graphs and the part each tensor plays in the loop (found at load)."""

    encoder: ort.InferenceSession
    step: ort.InferenceSession
    text_input: str
    """The encoder's one input: uint8 [N, text_length], the text's bytes, zero-padded."""
    text_length: int
    constants: tuple[str, ...]
    """Step inputs taken from the encoder's outputs of the same name, the same every step."""
    recurrent: dict[str, str]
    """Step input -> the step output fed back into it at the next step."""
    initial: dict[str, np.ndarray]
    """Recurrent inputs the encoder does not give: their first value (zeros, one row)."""
    extras: tuple[str, ...]
    """Step outputs sent with each token (the attention weights)."""
    tokens: tuple[str, ...]
    start: int
    end: int


@dataclass
class Token:
    id: int
    text: str
    extras: dict[str, np.ndarray]
    """Each extra output's row for this token."""


class TokenSource(Protocol):
    """What answers a text generator's requests: its decode loop, or a split server's front
    end passing them to the engine's. Both say so with `generates = True`."""

    name: str
    generates: bool
    max_tokens: int
    """The longest answer the model's config allows."""

    def generate(
        self, text: bytes, max_tokens: int, deadline_s: float | None = None
    ) -> AsyncGenerator[Token, None]: ...


@dataclass
class _Answer:
    text: np.ndarray
    max_tokens: int
    enqueued_ns: int
    deadline_ns: int | None
    tokens: asyncio.Queue[Token | BaseException | None] = field(default_factory=asyncio.Queue)
    admitted_ns: int = 0
    produced: int = 0
    ended: bool = False
    """Its last token was sent (request-level batching keeps its row until the batch ends)."""
    gone: bool = False
    """Its caller stopped listening: it leaves the batch at the next step."""


class _Pending:
    """What the queue metrics read: requests waiting to join, and how many may."""

    def __init__(self, waiting: deque[_Answer], capacity: int) -> None:
        self._waiting = waiting
        self.capacity = capacity

    def __len__(self) -> int:
        return len(self._waiting)


class GeneratorScheduler:
    """What a text generator's scheduler answers as a JobScheduler (its requests go through
    `generate` instead): shared by the decode loop and a split server's front end."""

    name: str
    max_tokens: int
    batching = True
    generates = True

    @contextlib.contextmanager
    def reserve(self, items: int, deadline_s: float | None = None) -> Iterator[None]:
        yield  # images never reach a generator

    def backlog_ns(self) -> float:
        return 0.0

    def item_ns(self) -> float:
        return 0.0

    async def submit(
        self,
        feeds: dict[str, np.ndarray],
        items: int,
        output_names: Sequence[str],
        priority: int = 0,
        timeout_us: int = 0,
        deadline_s: float | None = None,
        sequence: SequenceStep | None = None,
    ) -> JobResult:
        raise InvalidInput(f"model '{self.name}' generates text: it is run by its decode loop")


class DecodeLoop(GeneratorScheduler):
    """Queue, step batch and loop of one generator version."""

    def __init__(
        self,
        name: str,
        graphs: LoopGraphs,
        executor: Executor,
        stats: ModelStats,
        max_queue: int,
        max_active: int,
        continuous: bool = True,
        histograms: VersionHistograms | None = None,
        max_tokens: int = 64,
    ) -> None:
        self.name = name
        self.max_tokens = max_tokens
        self.graphs = graphs
        self.max_active = max_active
        self.continuous = continuous
        self._executor = executor
        self._stats = stats
        self._histograms = histograms
        self._waiting: deque[_Answer] = deque()
        self.queue = _Pending(self._waiting, max_queue)
        self._active: list[_Answer] = []
        self._batch: dict[str, np.ndarray] = {}
        self._next_tokens = np.zeros(0, np.int64)
        self._wakeup: asyncio.Event | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._retired = False

    # ---- what the data plane calls -------------------------------------------------------------

    def encode_text(self, text: bytes) -> np.ndarray:
        """The encoder's row for a text: its bytes, zero-padded; refused when too long."""
        length = self.graphs.text_length
        if len(text) > length:
            raise InvalidInput(
                f"input 'text_input': {len(text)} bytes, longer than the {length} bytes model "
                f"'{self.name}' reads"
            )
        if b"\0" in text:
            raise InvalidInput("input 'text_input': the text holds a zero byte (the padding)")
        row = np.zeros((1, length), np.uint8)
        row[0, : len(text)] = np.frombuffer(text, np.uint8)
        return row

    async def generate(
        self, text: bytes, max_tokens: int, deadline_s: float | None = None
    ) -> AsyncGenerator[Token, None]:
        """The answer's tokens as they are decoded (the end token is not sent). Closing the
        iterator early takes the answer out of the batch at the next step."""
        if self._retired:
            raise ModelUnavailable(f"model '{self.name}' is being unloaded or replaced")
        if len(self._waiting) >= self.queue.capacity:
            raise ServerBusy(
                f"model '{self.name}': {len(self._waiting)} requests already wait to join the "
                f"decode loop (max_queue_size {self.queue.capacity}); try again later"
            )
        now = time.perf_counter_ns()
        deadline_ns = now + int(deadline_s * 1e9) if deadline_s is not None else None
        answer = _Answer(self.encode_text(text), max_tokens, now, deadline_ns)
        self._waiting.append(answer)
        self._ensure_started().set()
        ended = False
        try:
            while (item := await answer.tokens.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
            ended = True
        finally:
            answer.gone = not ended
            if answer.gone:
                self._wake()
            else:
                self._record(answer)

    def retire(self) -> None:
        """The version was replaced or unloaded: answers accepted run to their end, then the
        loop stops."""
        self._retired = True
        self._wake()

    # ---- the loop ------------------------------------------------------------------------------

    def _ensure_started(self) -> asyncio.Event:
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
            self._loop_task = asyncio.create_task(self._loop(), name=f"decode {self.name}")
        return self._wakeup

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    async def _loop(self) -> None:
        wakeup = self._ensure_started()
        while True:
            if self.continuous:
                self._leave([a.gone for a in self._active])
            if not self._active and not self._waiting:
                if self._retired:
                    return
                wakeup.clear()
                await wakeup.wait()
                continue
            joining = self._take_waiting()
            try:
                await self._iterate(joining)
            except Exception as exc:  # the graphs failed: every answer under way ends with it
                log.exception("model '%s': the decode loop failed", self.name)
                for answer in self._active + joining:
                    answer.tokens.put_nowait(exc)
                self._active, self._batch = [], {}
                self._next_tokens = np.zeros(0, np.int64)

    def _take_waiting(self) -> list[_Answer]:
        if not self.continuous and self._active:
            return []  # request-level: the batch under way runs to its longest answer first
        now = time.perf_counter_ns()
        joining: list[_Answer] = []
        while self._waiting and len(self._active) + len(joining) < self.max_active:
            answer = self._waiting.popleft()
            if answer.gone:
                continue
            if answer.deadline_ns is not None and now > answer.deadline_ns:
                answer.tokens.put_nowait(
                    DeadlineExceeded(f"model '{self.name}': the deadline passed in the queue")
                )
                continue
            answer.admitted_ns = now
            joining.append(answer)
        return joining

    def _stack(self, texts: np.ndarray | None) -> None:
        """Encodes the joining answers' texts and stacks their rows under those of the batch
        (on the worker thread: the loop thread waits for the iteration meanwhile)."""
        if texts is None:
            return
        graphs = self.graphs
        encoded = self.run_encoder(texts)
        rows: dict[str, np.ndarray] = {name: encoded[name] for name in graphs.constants}
        for name in graphs.recurrent:
            if name in encoded:
                rows[name] = encoded[name]
            else:
                rows[name] = np.repeat(graphs.initial[name], len(texts), axis=0)
        starts = np.full(len(texts), graphs.start, np.int64)
        if len(self._next_tokens):
            self._batch = {n: np.concatenate([self._batch[n], rows[n]]) for n in rows}
            self._next_tokens = np.concatenate([self._next_tokens, starts])
        else:
            self._batch, self._next_tokens = rows, starts

    def run_encoder(self, texts: np.ndarray) -> dict[str, np.ndarray]:
        session = self.graphs.encoder
        names = [o.name for o in session.get_outputs()]
        outputs = _invoke(session.run, names, {self.graphs.text_input: texts})
        return dict(zip(names, outputs, strict=True))

    def run_step(self, feeds: dict[str, np.ndarray], names: list[str]) -> tuple[list[Any], int]:
        started = time.perf_counter_ns()
        outputs = _invoke(self.graphs.step.run, names, feeds)
        return outputs, time.perf_counter_ns() - started

    def _join_and_step(self, texts: np.ndarray | None, names: list[str]) -> tuple[list[Any], int]:
        self._stack(texts)
        return self.run_step({"token": self._next_tokens, **self._batch}, names)

    async def _iterate(self, joining: list[_Answer]) -> None:
        """One step of every answer under way, the joining ones encoded and stacked first: one
        hop to the worker thread."""
        if not joining and not self._active:
            return
        graphs = self.graphs
        texts = np.concatenate([a.text for a in joining]) if joining else None
        recurrent_outputs = list(graphs.recurrent.values())
        names = ["logits", *recurrent_outputs, *graphs.extras]
        loop = asyncio.get_running_loop()
        outputs, infer_ns = await loop.run_in_executor(
            self._executor, self._join_and_step, texts, names
        )
        self._active.extend(joining)
        t0 = time.perf_counter_ns()
        chosen = np.asarray(outputs[0]).argmax(axis=1).astype(np.int64)
        for name, value in zip(
            graphs.recurrent, outputs[1 : 1 + len(recurrent_outputs)], strict=True
        ):
            self._batch[name] = value
        extras = dict(zip(graphs.extras, outputs[1 + len(recurrent_outputs) :], strict=True))
        self._next_tokens = chosen
        finished = []
        for row, answer in enumerate(self._active):
            token = int(chosen[row])
            if answer.gone or answer.ended:
                finished.append(True)
                continue
            if token == graphs.end:
                answer.tokens.put_nowait(None)
                answer.ended = True
                finished.append(True)
                continue
            text = graphs.tokens[token] if token < len(graphs.tokens) else ""
            answer.tokens.put_nowait(Token(token, text, {n: v[row] for n, v in extras.items()}))
            answer.produced += 1
            if answer.produced == 1 and self._histograms is not None:
                self._histograms.observe_first_token(t0 - answer.enqueued_ns)
            answer.ended = answer.produced >= answer.max_tokens
            if answer.ended:
                answer.tokens.put_nowait(None)
            finished.append(answer.ended)
        self._stats.record_execution(len(chosen), 0, infer_ns, time.perf_counter_ns() - t0)
        if self.continuous or all(finished):
            self._leave(finished)

    def _leave(self, finished: list[bool]) -> None:
        """Takes the finished answers' rows out of the stacked batch."""
        if not any(finished):
            return
        keep = np.flatnonzero(~np.asarray(finished, bool))
        self._active = [self._active[i] for i in keep]
        if not self._active:
            self._batch, self._next_tokens = {}, np.zeros(0, np.int64)
            return
        self._batch = {name: value[keep] for name, value in self._batch.items()}
        self._next_tokens = self._next_tokens[keep]

    def _record(self, answer: _Answer) -> None:
        now = time.perf_counter_ns()
        queue_ns = answer.admitted_ns - answer.enqueued_ns
        timing = RequestTiming(queue_ns, 0, now - answer.admitted_ns, 0, 1)
        self._stats.record_success(now - answer.enqueued_ns, timing)
        if self._histograms is not None:
            self._histograms.observe_request(now - answer.enqueued_ns, queue_ns, 1)
