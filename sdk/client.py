"""The synchronous client."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
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
from .sequences import SequenceSession


class Client(Connections):
    """A deepserve client: one call, one prediction.

    >>> from deepserve import Client
    >>> client = Client("localhost:8001")
    >>> client.classify("digit.png", model="mnist").label
    '7'
    >>> for box in client.detect("scene.png", model="ssd"):
    ...     print(box)
    4 (0.981) at [31, 40, 62, 95]

    Each task method takes one image (a path, encoded bytes, a uint8 numpy array or a PIL
    image) and returns one result, or a list of images (one request) and returns a list.
    `model` may be left out when the server has exactly one model of that task.

    `target` may be several addresses: calls are spread over them, and an attempt whose server
    is down moves on to the next. UNAVAILABLE and RESOURCE_EXHAUSTED are retried `retries` times
    with exponential backoff; `timeout` (seconds) bounds each attempt. `tls=True` (or
    `root_certificates`, or ready `credentials`) uses TLS, with `client_certificate` and
    `client_key` (PEM bytes) for mutual TLS; `token` is sent as a bearer token.
    """

    _secure_channel = staticmethod(grpc.secure_channel)
    _insecure_channel = staticmethod(grpc.insecure_channel)

    def _run(self, call: Call) -> Any:
        if call.task and not call.request.model:
            call.request.model = _calls.pick_model(call.task, self.models())
        last: grpc.RpcError | None = None
        for attempt, rpc in self._attempts(call):
            try:
                response = rpc(
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
                    time.sleep(delay)
        assert last is not None
        raise from_rpc_error(last) from None

    def task(
        self,
        name: str,
        images: ImageLike | Sequence[ImageLike],
        *,
        model: str | None = None,
        version: str = "",
        **options: Any,
    ) -> Any:
        """Any task of the server's Vision API by name ('classify', 'detect', 'segment', 'read');
        `options` are fields of its request message. The typed methods below call this.

        >>> client.task("classify", "digit.png", model="mnist", top_k=3)
        """
        return self._run(_calls.task(name, images, model, version, options))

    def classify(
        self,
        images: ImageLike | Sequence[ImageLike],
        *,
        model: str | None = None,
        top_k: int = 1,
        version: str = "",
    ) -> Classification | list[Classification]:
        """Top `top_k` labels of an image (or of each image of a list)."""
        return self.task("classify", images, model=model, version=version, top_k=top_k)

    def detect(
        self,
        images: ImageLike | Sequence[ImageLike],
        *,
        model: str | None = None,
        score_threshold: float | None = None,
        max_detections: int | None = None,
        version: str = "",
    ) -> list[Detection] | list[list[Detection]]:
        """Labelled boxes in an image (or in each image of a list), in its own pixels."""
        return self.task(
            "detect",
            images,
            model=model,
            version=version,
            score_threshold=score_threshold,
            max_detections=max_detections,
        )

    def read(
        self,
        images: ImageLike | Sequence[ImageLike],
        *,
        model: str | None = None,
        version: str = "",
    ) -> Reading | list[Reading]:
        """The text of an image (or of each image of a list), with a box per character in
        its own pixels: a house number's digits from `read_number`."""
        return self.task("read", images, model=model, version=version)

    def segment(
        self,
        images: ImageLike | Sequence[ImageLike],
        *,
        model: str | None = None,
        png: bool = False,
        version: str = "",
    ) -> Segmentation | list[Segmentation]:
        """A class per pixel of an image (or of each image of a list), at its own size. `png`
        sends masks PNG-compressed (fewer bytes on the wire, a little more CPU)."""
        return self.task(
            "segment", images, model=model, version=version, mask_encoding=_calls.mask_encoding(png)
        )

    def infer(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[str] | None = None,
        *,
        version: str = "",
    ) -> dict[str, np.ndarray]:
        """Tensors in, tensors out, over the Open Inference Protocol (ModelInfer).

        >>> client.infer("mnist", {"image": digits})["logits"].shape
        (8, 10)
        """
        return self._run(_calls.infer(model, inputs, outputs, version))

    def generate(
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
        return generative.images(self._run(call))

    def embed(
        self, words: str | Sequence[str], *, model: str = embeddings.EMBEDDER, version: str = ""
    ) -> np.ndarray:
        """Unit vectors of words: FP32 [D] for one word, [N, D] for a list. A word outside the
        vocabulary raises UnknownWordsError naming it.

        >>> client.embed(["list", "tuple"]).shape
        (2, 64)
        """
        listed, single = embeddings.word_list(words)
        found = embeddings.vectors(self._run(embeddings.embed_call(model, listed, version)), listed)
        return found[0] if single else found

    def similar(
        self,
        query: str | Sequence[float] | np.ndarray,
        *,
        k: int = 10,
        model: str = embeddings.SEARCHER,
        embedder: str = embeddings.EMBEDDER,
        version: str = "",
    ) -> list[embeddings.Neighbour]:
        """The k words nearest a word (itself left out) or a vector, best first, by cosine.

        >>> [n.word for n in client.similar("monday", k=3)]
        ['sunday', 'thursday', 'week']
        """
        word = query if isinstance(query, str) else None
        vector: Sequence[float] | np.ndarray
        if isinstance(query, str):
            vector = self.embed(query, model=embedder, version=version)
        else:
            vector = query
        call = embeddings.similar_call(model, embeddings.query_vectors(vector), k, version)
        return embeddings.neighbours(self._run(call), k, word)

    def act(
        self,
        observation: Sequence[float] | np.ndarray,
        *,
        model: str = agents.POLICY,
        version: str = "",
    ) -> Action | list[Action]:
        """The action a served policy takes for an observation (a list of numbers), or a list
        of actions for [N, D] observations; each with the policy's value of every action.

        >>> client.act(env_observation).action   # 0: push left, 1: push right
        1
        """
        call, single = agents.act_call(model, observation, version)
        return agents.actions(self._run(call), single)

    def sequence(
        self,
        model: str,
        sequence_id: int | str | None = None,
        *,
        version: str = "",
        started: bool = False,
    ) -> SequenceSession:
        """A session for one sequence of a stateful model (`sequence_batching`): each `send`
        is its next request, the server keeps the model's state between them (a random id
        unless given). `started=True` continues a sequence already started (by id).

        >>> with client.sequence("lstm_reader") as reading:
        ...     for row in range(28):
        ...         logits = reading.send(digit[None, row : row + 1], end=row == 27)["logits"]
        """
        return SequenceSession(self._run, self.model_info, model, sequence_id, version, started)

    def translate(
        self,
        text: str,
        *,
        model: str = generation.TRANSLATOR,
        max_tokens: int | None = None,
        version: str = "",
    ) -> Translation:
        """A text generator's whole answer (the server runs its decode loop), with the
        attention of each token.

        >>> client.translate("3rd of May 1979").text
        '1979-05-03'
        """
        request = generation.request(model, text, False, max_tokens, version)
        for message in self._stream(request):
            return generation.translation(text, message)
        raise DeepserveError(f"model '{model}' sent no answer")

    def translate_stream(
        self,
        text: str,
        *,
        model: str = generation.TRANSLATOR,
        max_tokens: int | None = None,
        version: str = "",
    ) -> Iterator[Token]:
        """The answer's tokens as the server decodes them; leaving the loop early stops the
        decoding on the server.

        >>> "".join(token.text for token in client.translate_stream("05/03/79"))
        '1979-05-03'
        """
        request = generation.request(model, text, True, max_tokens, version)
        return generation.tokens(self._stream(request))

    def _stream(self, request: Any) -> Iterator[Any]:
        """A one-request ModelStreamInfer call's responses; retried like any call until the
        first response comes, cancelled when the reader stops early."""
        call = Call(_calls.TENSORS, "ModelStreamInfer", request, lambda response: response)
        last: grpc.RpcError | None = None
        for attempt, rpc in self._attempts(call):
            responses = rpc(
                iter([request]), timeout=self._options.timeout, metadata=self._metadata()
            )
            try:
                first = next(responses)
            except StopIteration:
                return
            except grpc.RpcError as error:
                last = error
                delay = self._delay(error, attempt)
                if delay is None:
                    break
                time.sleep(delay)
                continue
            try:
                yield first
                yield from responses
            finally:
                responses.cancel()
            return
        assert last is not None
        raise from_rpc_error(last) from None

    def models(self) -> list[ModelInfo]:
        """Every model the server holds, with its task, input size and labels."""
        return self._run(_calls.list_models())

    def model_info(self, name: str) -> ModelInfo:
        """One model, with its tensor inputs and outputs."""
        summary = next((m for m in self.models() if m.name == name), None)
        if summary is None:
            raise DeepserveError(f"the server has no model '{name}'")
        return _convert.with_tensors(summary, self._run(_calls.model_metadata(name)))

    def ready(self) -> bool:
        """True when the server has loaded every model it should (ServerReady)."""
        try:
            return self._run(_calls.server_ready())
        except DeepserveError:
            return False

    def live(self) -> bool:
        """True when a server answers at all (ServerLive)."""
        try:
            return self._run(_calls.server_live())
        except DeepserveError:
            return False

    def close(self) -> None:
        for channel in self._channels:
            channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
