"""The asyncio client: the same methods as Client, awaitable."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any

import grpc
import numpy as np

from . import _calls, _convert, agents, embeddings, generation, generative
from ._calls import Call
from ._connection import Connections
from ._convert import ImageLike
from .agents import Action
from .errors import DeepserveError, from_rpc_error
from .generation import Token, Translation
from .results import Classification, Detection, ModelInfo, Reading, Segmentation
from .sequences import AsyncSequenceSession


class AsyncClient(Connections):
    """Like :class:`deepserve.Client`, for asyncio code.

    >>> async with AsyncClient("localhost:8001") as client:
    ...     labels = await asyncio.gather(*(client.classify(p, model="mnist") for p in paths))
    """

    _secure_channel = staticmethod(grpc.aio.secure_channel)
    _insecure_channel = staticmethod(grpc.aio.insecure_channel)

    async def _run(self, call: Call) -> Any:
        if call.task and not call.request.model:
            call.request.model = _calls.pick_model(call.task, await self.models())
        last: grpc.RpcError | None = None
        for attempt, rpc in self._attempts(call):
            try:
                response = await rpc(
                    call.request,
                    timeout=self._options.timeout,
                    metadata=self._metadata() + call.metadata,
                )
                return call.parse(response)
            except grpc.RpcError as error:
                last = error
                delay = self._delay(error, attempt)
                if delay is None:
                    break
                if delay:
                    await asyncio.sleep(delay)
        assert last is not None
        raise from_rpc_error(last) from None

    async def task(
        self,
        name: str,
        images: ImageLike | Sequence[ImageLike],
        *,
        model: str | None = None,
        version: str = "",
        **options: Any,
    ) -> Any:
        """Any task of the server's Vision API by name ('classify', 'detect', 'segment', 'read');
        `options` are fields of its request message. The typed methods below call this."""
        return await self._run(_calls.task(name, images, model, version, options))

    async def classify(
        self,
        images: ImageLike | Sequence[ImageLike],
        *,
        model: str | None = None,
        top_k: int = 1,
        version: str = "",
    ) -> Classification | list[Classification]:
        return await self.task("classify", images, model=model, version=version, top_k=top_k)

    async def detect(
        self,
        images: ImageLike | Sequence[ImageLike],
        *,
        model: str | None = None,
        score_threshold: float | None = None,
        max_detections: int | None = None,
        version: str = "",
    ) -> list[Detection] | list[list[Detection]]:
        return await self.task(
            "detect",
            images,
            model=model,
            version=version,
            score_threshold=score_threshold,
            max_detections=max_detections,
        )

    async def read(
        self,
        images: ImageLike | Sequence[ImageLike],
        *,
        model: str | None = None,
        version: str = "",
    ) -> Reading | list[Reading]:
        """The text of an image (or of each image of a list), with a box per character in
        its own pixels: a house number's digits from `read_number`."""
        return await self.task("read", images, model=model, version=version)

    async def segment(
        self,
        images: ImageLike | Sequence[ImageLike],
        *,
        model: str | None = None,
        png: bool = False,
        version: str = "",
    ) -> Segmentation | list[Segmentation]:
        return await self.task(
            "segment", images, model=model, version=version, mask_encoding=_calls.mask_encoding(png)
        )

    async def infer(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[str] | None = None,
        *,
        version: str = "",
    ) -> dict[str, np.ndarray]:
        return await self._run(_calls.infer(model, inputs, outputs, version))

    async def generate(
        self,
        *,
        digit: int,
        n: int = 1,
        seed: int = 0,
        model: str = generative.GENERATOR,
        version: str = "",
    ) -> np.ndarray:
        """`n` generated images of `digit` (a conditional GAN), uint8 [n, 28, 28]; image i is
        seed + i's, the same every time.

        >>> client.generate(digit=7, n=16, seed=1).shape
        (16, 28, 28)
        """
        call = generative.generate_call(model, digit, n, seed, version)
        return generative.images(await self._run(call))

    async def embed(
        self, words: str | Sequence[str], *, model: str = embeddings.EMBEDDER, version: str = ""
    ) -> np.ndarray:
        """Unit vectors of words (see Client.embed)."""
        listed, single = embeddings.word_list(words)
        call = embeddings.embed_call(model, listed, version)
        found = embeddings.vectors(await self._run(call), listed)
        return found[0] if single else found

    async def similar(
        self,
        query: str | Sequence[float] | np.ndarray,
        *,
        k: int = 10,
        model: str = embeddings.SEARCHER,
        embedder: str = embeddings.EMBEDDER,
        version: str = "",
    ) -> list[embeddings.Neighbour]:
        """The k words nearest a word or a vector (see Client.similar)."""
        word = query if isinstance(query, str) else None
        vector: Sequence[float] | np.ndarray
        if isinstance(query, str):
            vector = await self.embed(query, model=embedder, version=version)
        else:
            vector = query
        call = embeddings.similar_call(model, embeddings.query_vectors(vector), k, version)
        return embeddings.neighbours(await self._run(call), k, word)

    async def act(
        self,
        observation: Sequence[float] | np.ndarray,
        *,
        model: str = agents.POLICY,
        version: str = "",
    ) -> Action | list[Action]:
        """The action a served policy takes for an observation (see Client.act)."""
        call, single = agents.act_call(model, observation, version)
        return agents.actions(await self._run(call), single)

    def sequence(
        self,
        model: str,
        sequence_id: int | str | None = None,
        *,
        version: str = "",
        started: bool = False,
    ) -> AsyncSequenceSession:
        """Like :meth:`deepserve.Client.sequence`: `async with client.sequence(m) as s:` and
        `await s.send(...)`."""
        return AsyncSequenceSession(
            self._run, self.model_info, model, sequence_id, version, started
        )

    async def translate(
        self,
        text: str,
        *,
        model: str = generation.TRANSLATOR,
        max_tokens: int | None = None,
        version: str = "",
    ) -> Translation:
        """A text generator's whole answer, with the attention of each token."""
        request = generation.request(model, text, False, max_tokens, version)
        responses = self._stream(request)
        async with contextlib.aclosing(responses):
            async for message in responses:
                return generation.translation(text, message)
        raise DeepserveError(f"model '{model}' sent no answer")

    def translate_stream(
        self,
        text: str,
        *,
        model: str = generation.TRANSLATOR,
        max_tokens: int | None = None,
        version: str = "",
    ) -> AsyncIterator[Token]:
        """The answer's tokens as the server decodes them.

        >>> async for token in client.translate_stream("05/03/79"):
        ...     print(token.text)
        """
        request = generation.request(model, text, True, max_tokens, version)
        return generation.tokens_async(self._stream(request))

    async def _stream(self, request: Any) -> AsyncGenerator[Any, None]:
        """A one-request ModelStreamInfer call's responses; retried like any call until the
        first response comes, cancelled when the reader stops early."""
        call = Call(_calls.TENSORS, "ModelStreamInfer", request, lambda response: response)
        last: grpc.RpcError | None = None
        for attempt, rpc in self._attempts(call):
            responses = rpc(
                iter([request]), timeout=self._options.timeout, metadata=self._metadata()
            )
            try:
                first = await responses.read()
            except grpc.RpcError as error:
                last = error
                delay = self._delay(error, attempt)
                if delay is None:
                    break
                await asyncio.sleep(delay)
                continue
            try:
                if first is grpc.aio.EOF:
                    return
                yield first
                while (message := await responses.read()) is not grpc.aio.EOF:
                    yield message
            finally:
                responses.cancel()
            return
        assert last is not None
        raise from_rpc_error(last) from None

    async def models(self) -> list[ModelInfo]:
        return await self._run(_calls.list_models())

    async def model_info(self, name: str) -> ModelInfo:
        summary = next((m for m in await self.models() if m.name == name), None)
        if summary is None:
            raise DeepserveError(f"the server has no model '{name}'")
        return _convert.with_tensors(summary, await self._run(_calls.model_metadata(name)))

    async def ready(self) -> bool:
        try:
            return await self._run(_calls.server_ready())
        except DeepserveError:
            return False

    async def live(self) -> bool:
        try:
            return await self._run(_calls.server_live())
        except DeepserveError:
            return False

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
