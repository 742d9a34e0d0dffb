"""Requests to a text generator: the inputs read and checked, the decode loop's tokens turned into
responses: one a token when the request streams (a decoupled model), else one with the whole
answer."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator
from typing import cast

import numpy as np

from ..batching.decode_loop import Token, TokenSource
from ..models.model import ModelVersion
from ..protocol.errors import InvalidInput
from ..protocol.generator_config import (
    MAX_TOKENS_INPUT,
    STREAM_INPUT,
    TEXT_INPUT,
    TEXT_OUTPUT,
)
from ..protocol.types import InferRequest, InferResponse, OutputTensor, RequestedOutput
from .inputs import RequestLimits, decode_inputs, requested_outputs


def decode_loop(model: ModelVersion) -> TokenSource | None:
    """The model's decode loop when it is a text generator (checked on every request: an
    attribute is cheaper than a protocol check)."""
    scheduler = model.scheduler
    return cast(TokenSource, scheduler) if getattr(scheduler, "generates", False) else None


def _flag(feeds: dict[str, np.ndarray], name: str) -> bool:
    return bool(feeds[name].reshape(-1)[0]) if name in feeds else False


def _max_tokens(model: ModelVersion, loop: TokenSource, feeds: dict[str, np.ndarray]) -> int:
    most = loop.max_tokens  # read from the config once, at load
    if MAX_TOKENS_INPUT not in feeds:
        return most
    asked = int(feeds[MAX_TOKENS_INPUT].reshape(-1)[0])
    if not 1 <= asked <= most:
        raise InvalidInput(
            f"input '{MAX_TOKENS_INPUT}': {asked} is outside 1..{most} (model '{model.name}')"
        )
    return asked


def _text(feeds: dict[str, np.ndarray]) -> bytes:
    """The text as bytes; the data plane has already refused what is not UTF-8."""
    value = feeds[TEXT_INPUT].reshape(-1)[0]
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _response(
    model: ModelVersion,
    request: InferRequest,
    wanted: list[RequestedOutput],
    text: bytes,
    extras: dict[str, np.ndarray],
    final: bool = True,
) -> InferResponse:
    arrays = {TEXT_OUTPUT: np.array([text], dtype=object), **extras}
    outputs = [
        OutputTensor(
            w.name,
            "BYTES" if w.name == TEXT_OUTPUT else "FP32",
            arrays[w.name],
            w.binary,
            None,
        )
        for w in wanted
    ]
    return InferResponse(model.name, str(model.version), request.id, outputs, final)


def _stacked(model: ModelVersion, name: str, tokens: list[Token]) -> np.ndarray:
    if tokens:
        return np.stack([t.extras[name] for t in tokens]).astype(np.float32, copy=False)
    dims = [d for d in model.outputs[name].dims[1:]]
    return np.zeros((0, *dims), np.float32)


def check_outputs(wanted: list[RequestedOutput]) -> None:
    for output in wanted:
        if output.region is not None or output.classification:
            raise InvalidInput(
                f"output '{output.name}': a generator's outputs go in the response, without "
                "shared memory or classification"
            )


async def _generate(
    model: ModelVersion,
    loop: TokenSource,
    request: InferRequest,
    feeds: dict[str, np.ndarray],
    wanted: list[RequestedOutput],
    streaming: bool,
    deadline_s: float | None,
) -> AsyncGenerator[InferResponse, None]:
    """The responses to one request. `streaming`: the transport can carry several (a stream
    call or generate_stream); a request asks for them with its `stream` input."""
    check_outputs(wanted)
    stream = _flag(feeds, STREAM_INPUT)
    if stream and not model.config.model_transaction_policy.decoupled:
        raise InvalidInput(
            f"model '{model.name}' is not decoupled (model_transaction_policy): it answers "
            f"once, so input '{STREAM_INPUT}' must be false"
        )
    if stream and not streaming:
        raise InvalidInput(
            f"input '{STREAM_INPUT}' is true but this call answers once; use ModelStreamInfer "
            "or generate_stream"
        )
    extras = [w.name for w in wanted if w.name != TEXT_OUTPUT]
    tokens = loop.generate(_text(feeds), _max_tokens(model, loop, feeds), deadline_s)
    if stream:
        async for token in tokens:
            rows = {
                name: token.extras[name][None].astype(np.float32, copy=False) for name in extras
            }
            yield _response(model, request, wanted, token.text.encode("utf-8"), rows, False)
        yield InferResponse(model.name, str(model.version), request.id, [], True)
        return
    answer = [token async for token in tokens]
    text = "".join(token.text for token in answer).encode("utf-8")
    stacked = {name: _stacked(model, name, answer) for name in extras}
    yield _response(model, request, wanted, text, stacked)


async def responses(
    model: ModelVersion,
    loop: TokenSource,
    request: InferRequest,
    limits: RequestLimits,
    streaming: bool,
    deadline_s: float | None,
) -> AsyncGenerator[InferResponse, None]:
    """A request's responses, failures counted in the model's statistics (the decode loop
    counts the successes, whose queue and decode times it knows)."""
    started = time.perf_counter_ns()
    try:
        feeds, _ = decode_inputs(model, request, limits)
        wanted = requested_outputs(model, request)
        answers = _generate(model, loop, request, feeds, wanted, streaming, deadline_s)
        async with contextlib.aclosing(answers):
            async for response in answers:
                yield response
    except Exception:
        model.stats.record_failure(time.perf_counter_ns() - started)
        raise


async def answer_once(
    model: ModelVersion,
    loop: TokenSource,
    request: InferRequest,
    limits: RequestLimits,
    deadline_s: float | None,
) -> InferResponse:
    """The one answer of a model that is not decoupled (ModelInfer, infer)."""
    if model.config.model_transaction_policy.decoupled:
        raise InvalidInput(
            f"model '{model.name}' is decoupled (it may answer many times): ModelInfer and "
            "infer cannot carry its answers; use ModelStreamInfer or the generate extension"
        )
    async with contextlib.aclosing(
        responses(model, loop, request, limits, False, deadline_s)
    ) as answers:
        async for answer in answers:
            return answer
    raise AssertionError("a generator request answers once")
