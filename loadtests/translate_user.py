"""The Locust user for a text generator: a date, written as people write it, streamed through the
translator over ModelStreamInfer, reported twice: to its first token and to its last (the
answer checked against the date's ISO form; a wrong one is a failure). Idle unless
--translate-model names the model (date_translator)."""

from __future__ import annotations

import random
import time
from typing import ClassVar

import gevent
import grpc
from locust import between, task

from deepserve import generation
from deepserve.errors import from_rpc_error
from deepserve.training import dates

from .grpc_user import GrpcUser


def date_pairs(count: int = 200, seed: int = 11) -> list[tuple[str, str]]:
    """(text, ISO) pairs in the formats the translator learned, on dates it never saw."""
    unseen = sorted(dates.held_out_dates(count, seed))
    names = sorted(dates.TRAIN_FORMATS)
    return [
        (dates.TRAIN_FORMATS[names[i % len(names)]](day), day.isoformat())
        for i, day in enumerate(unseen)
    ]


class TranslateUser(GrpcUser):
    wait_time = between(0, 0.01)
    pairs: ClassVar[list[tuple[str, str]]] = []
    """Filled at test start by the locustfile's reference pass."""

    @task
    def translate(self) -> None:
        model = self.environment.parsed_options.translate_model
        if not model or not self.pairs:
            gevent.sleep(1)  # not asked for: idle
            return
        text, iso = random.choice(self.pairs)
        request = generation.request(model, text, True, None)
        started = time.perf_counter()
        first: float | None = None
        answer, exception = "", None
        try:
            responses = self._stubs["tensors"].ModelStreamInfer(
                iter([request]), timeout=30, metadata=self._metadata
            )
            for token in generation.tokens(responses):
                if first is None:
                    first = time.perf_counter()
                answer += token.text
            if answer != iso:
                exception = ValueError(f"{text!r} -> {answer!r}, expected {iso}")
        except grpc.RpcError as error:
            exception = from_rpc_error(error)
        except Exception as error:  # a stream error, reported as this request's failure
            exception = error
        ended = time.perf_counter()
        fire = self.environment.events.request.fire
        if first is not None:
            fire(
                request_type="stream",
                name=f"Translate {model} (first token)",
                response_time=(first - started) * 1000,
                response_length=0,
                exception=None,
                context={},
            )
        fire(
            request_type="stream",
            name=f"Translate {model} (last token)",
            response_time=(ended - started) * 1000,
            response_length=len(answer),
            exception=exception,
            context={},
        )
