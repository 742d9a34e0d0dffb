"""Sequence sessions: the requests of one sequence of a stateful model (`sequence_batching`),
the first with sequence_start, the one sent with `end=True` with sequence_end; the server
keeps the model's state between them.

>>> with client.sequence("lstm_reader") as reading:
...     for row in range(0, 28, 4):
...         logits = reading.send(digit[None, row : row + 4], end=row == 24)["logits"]
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from . import _calls
from ._calls import Call
from .errors import DeepserveError
from .results import ModelInfo

Inputs = Mapping[str, np.ndarray] | np.ndarray


def new_sequence_id() -> int:
    """A random id that fits every CORRID type a model may take (63 bits, never 0)."""
    return secrets.randbits(63) or 1


class _Steps:
    """What both sessions share: the id, whether the next request starts the sequence, and
    the tensors of a step."""

    def __init__(
        self, model: str, sequence_id: int | str | None, version: str, started: bool
    ) -> None:
        self.model = model
        self.version = version
        self.id = new_sequence_id() if sequence_id is None else sequence_id
        self.started = started
        self.ended = False
        self._input: str | None = None

    def call(
        self, inputs: Inputs, outputs: Sequence[str] | None, end: bool, info: ModelInfo | None
    ) -> Call:
        if self.ended:
            raise DeepserveError(f"sequence {self.id!r} of model '{self.model}' has ended")
        if isinstance(inputs, np.ndarray):
            assert info is not None
            if len(info.inputs) != 1:
                raise DeepserveError(
                    f"model '{self.model}' takes inputs {sorted(info.inputs)}: send a mapping"
                )
            inputs = {next(iter(info.inputs)): inputs}
        start, self.started = not self.started, True
        self.ended = end
        return _calls.infer(
            self.model, inputs, outputs, self.version, sequence=(self.id, start, end)
        )


class _Session:
    """What the sync and async sessions share: how they are made, and their id."""

    def __init__(
        self,
        run: Callable[[Call], Any],
        model_info: Callable[[str], Any],
        model: str,
        sequence_id: int | str | None = None,
        version: str = "",
        started: bool = False,
    ) -> None:
        self._run = run
        self._model_info = model_info
        self._steps = _Steps(model, sequence_id, version, started)
        self._info: ModelInfo | None = None

    @property
    def id(self) -> int | str:
        return self._steps.id


class SequenceSession(_Session):
    """One sequence of a stateful model, from `Client.sequence(model)`."""

    def send(
        self, inputs: Inputs, outputs: Sequence[str] | None = None, *, end: bool = False
    ) -> dict[str, np.ndarray]:
        """The next request of the sequence (a bare array when the model has one input); its
        outputs. `end=True` on the last one ends the sequence on the server."""
        if isinstance(inputs, np.ndarray) and self._info is None:
            self._info = self._model_info(self._steps.model)
        return self._run(self._steps.call(inputs, outputs, end, self._info))

    def __enter__(self) -> SequenceSession:
        return self

    def __exit__(self, *exc: object) -> None:
        """A sequence left without `end=True` is released by the server at its idle timeout."""


class AsyncSequenceSession(_Session):
    """One sequence of a stateful model, from `AsyncClient.sequence(model)`."""

    async def send(
        self, inputs: Inputs, outputs: Sequence[str] | None = None, *, end: bool = False
    ) -> dict[str, np.ndarray]:
        if isinstance(inputs, np.ndarray) and self._info is None:
            self._info = await self._model_info(self._steps.model)
        return await self._run(self._steps.call(inputs, outputs, end, self._info))

    async def __aenter__(self) -> AsyncSequenceSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        """A sequence left without `end=True` is released by the server at its idle timeout."""
