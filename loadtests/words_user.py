"""The Locust user for word vectors: 8 common words embedded a request ("Embed <model>",
each answer checked to be known unit vectors), then one of them searched for ("Similar
<model>", checked: a word's own vector is nearest to itself, cosines best first). Idle unless
--similar-model names the search model (word_similar); --embed-model names the other."""

from __future__ import annotations

import random

import gevent
import numpy as np
from locust import between, task

from deepserve import embeddings

from .grpc_user import GrpcUser

WORDS = (
    "list", "tuple", "string", "integer", "file", "thread", "socket", "module", "function",
    "class", "monday", "seconds", "windows", "read", "write", "error", "value", "object",
)  # fmt: skip
"""Words any English technical text has: all in the bundled vocabulary."""


def check_vectors(outputs: dict, words: list[str]) -> None:
    vectors = embeddings.vectors(outputs, words)  # unknown words raise, naming them
    norms = np.linalg.norm(vectors, axis=1)
    if not np.allclose(norms, 1.0, atol=1e-4):
        raise ValueError(f"vectors not of unit length: {np.round(norms, 4).tolist()}")


def check_nearest(outputs: dict, word: str) -> None:
    found = embeddings.neighbours(outputs, embeddings.NEIGHBOURS, None)
    if found[0].word != word:
        raise ValueError(f"the nearest word to '{word}' is '{found[0].word}', not itself")
    scores = [n.score for n in found]
    if scores != sorted(scores, reverse=True):
        raise ValueError(f"cosines not best first: {scores[:5]}")


class WordsUser(GrpcUser):
    wait_time = between(0, 0.01)

    @task
    def similar(self) -> None:
        options = self.environment.parsed_options
        if not options.similar_model:
            gevent.sleep(1)  # not asked for: idle
            return
        words = random.sample(WORDS, 8)
        kept: dict = {}
        call = embeddings.embed_call(options.embed_model, words, "")
        if not self.request(call, f"Embed {options.embed_model} (8 words)",
                            lambda o: (check_vectors(o, words), kept.update(o))):  # fmt: skip
            return
        call = embeddings.similar_call(options.similar_model, kept["vector"][:1], 10, "")
        self.request(call, f"Similar {options.similar_model}", lambda o: check_nearest(o, words[0]))
