"""A front end's text generator: each answer is decoded by the engine's decode loop of the model
version and comes back a token a message; closing it early stops the engine's decoding."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Iterator, Sequence

import numpy as np

from ..batching.decode_loop import Token
from ..batching.scheduler import JobResult
from ..protocol.errors import InvalidInput
from ..protocol.sequence_config import SequenceStep
from . import wire
from .engine_client import EngineClient


class _NoQueue:
    """Nothing waits here: the engine's loop keeps the queue (and its metrics)."""

    capacity = 0

    def __len__(self) -> int:
        return 0


class RemoteGenerator:
    batching = True
    generates = True

    def __init__(self, client: EngineClient, name: str, version: int, pinned: bool) -> None:
        self._client = client
        self.name = name
        self._version = version
        self._pinned = pinned
        self.queue = _NoQueue()

    async def generate(
        self, text: bytes, max_tokens: int, deadline_s: float | None = None
    ) -> AsyncGenerator[Token, None]:
        message = ["generate", self.name, self._version, self._pinned, text, max_tokens, deadline_s]
        answers = self._client.stream(message)
        async with contextlib.aclosing(answers):
            async for (token_id, token_text, descriptors), frames in answers:
                extras = {n: np.array(a) for n, a in wire.arrays(descriptors, frames).items()}
                yield Token(token_id, token_text, extras)

    @contextlib.contextmanager
    def reserve(self, items: int, deadline_s: float | None = None) -> Iterator[None]:
        yield

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

    def retire(self) -> None:
        pass
