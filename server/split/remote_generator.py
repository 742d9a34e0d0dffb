"""A front end's text generator: each answer is decoded by the engine's decode loop of the model
version and comes back a token a message; closing it early stops the engine's decoding."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from ..batching.decode_loop import GeneratorScheduler, Token
from ..batching.queue import NoQueue
from ..protocol.generator_config import generator_config
from . import wire
from .engine_client import EngineClient


class RemoteGenerator(GeneratorScheduler):
    def __init__(
        self, client: EngineClient, name: str, version: int, pinned: bool, config: mc.ModelConfig
    ) -> None:
        self._client = client
        self.name = name
        self.max_tokens = generator_config(config).max_tokens
        self._version = version
        self._pinned = pinned
        self.queue = NoQueue()  # the engine's loop keeps the queue (and its metrics)

    async def generate(
        self, text: bytes, max_tokens: int, deadline_s: float | None = None
    ) -> AsyncGenerator[Token, None]:
        message = ["generate", self.name, self._version, self._pinned, text, max_tokens, deadline_s]
        answers = self._client.stream(message)
        async with contextlib.aclosing(answers):
            async for (token_id, token_text, descriptors), frames in answers:
                extras = {n: np.array(a) for n, a in wire.arrays(descriptors, frames).items()}
                yield Token(token_id, token_text, extras)

    def retire(self) -> None:
        pass
