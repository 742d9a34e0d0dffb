"""Word vectors: words in, unit vectors out, and the nearest words to a word or a vector
(skip-gram embeddings served as `word_embed` and `word_similar`).

>>> client.embed(["list", "tuple"]).shape
(2, 64)
>>> [n.word for n in client.similar("monday", k=3)]
['sunday', 'thursday', 'week']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import _calls
from ._calls import Call
from .errors import DeepserveError, InvalidInputError

EMBEDDER, SEARCHER = "word_embed", "word_similar"
MOST_AT_ONCE = 256
"""The bundled models' max_batch_size: one request holds at most this many words / vectors."""
NEIGHBOURS = 32
"""How many nearest words word_similar answers a vector; `similar` asks for up to one less."""


class UnknownWordsError(InvalidInputError):
    """Words the served vocabulary does not have (they have no vector: none is made up)."""

    def __init__(self, words: list[str]) -> None:
        super().__init__(
            f"not in the vocabulary: {', '.join(repr(w) for w in words[:10])}"
            + (f" and {len(words) - 10} more" if len(words) > 10 else "")
        )
        self.words = words


@dataclass(frozen=True)
class Neighbour:
    word: str
    score: float
    """Cosine similarity, -1 to 1."""


def word_list(words: str | Sequence[str]) -> tuple[list[str], bool]:
    """The words as a list, and whether one word (a str) was given."""
    single = isinstance(words, str)
    listed = [words] if isinstance(words, str) else list(words)
    if not listed:
        raise DeepserveError("no words given")
    if len(listed) > MOST_AT_ONCE:
        raise DeepserveError(f"at most {MOST_AT_ONCE} words a call; got {len(listed)}")
    for word in listed:
        if not isinstance(word, str):
            raise DeepserveError(f"a word is a str; got {type(word).__name__}")
    return listed, single


def embed_call(model: str, words: list[str], version: str) -> Call:
    return _calls.infer(model, {"word": np.array(words, object)[:, None]}, None, version)


def vectors(outputs: dict[str, np.ndarray], words: list[str]) -> np.ndarray:
    """FP32 [N, D]; UnknownWordsError naming the words the vocabulary lacks."""
    unknown = [w for w, known in zip(words, outputs["known"].reshape(-1), strict=True) if not known]
    if unknown:
        raise UnknownWordsError(unknown)
    return outputs["vector"]


def query_vectors(vector: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(vector, dtype=np.float32)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or not len(array):
        raise DeepserveError(f"a vector is a flat list of numbers; got shape {list(array.shape)}")
    if not np.abs(array).sum(axis=1).all():
        raise DeepserveError("a zero vector has no direction: it has no nearest words")
    return array


def similar_call(model: str, query: np.ndarray, k: int, version: str) -> Call:
    if not 1 <= k < NEIGHBOURS:
        raise DeepserveError(f"k is how many nearest words, 1 to {NEIGHBOURS - 1}; got {k}")
    return _calls.infer(model, {"vector": query}, None, version)


def neighbours(outputs: dict[str, np.ndarray], k: int, leave_out: str | None) -> list[Neighbour]:
    """The k nearest words of the first row, best first, without `leave_out` (the word asked
    about, which is nearest to itself)."""
    found = [
        Neighbour(word.decode() if isinstance(word, bytes) else str(word), float(score))
        for word, score in zip(outputs["word"][0], outputs["score"][0], strict=True)
    ]
    return [n for n in found if n.word != leave_out][:k]


def projection(vectors: np.ndarray) -> np.ndarray:
    """[N, D] -> [N, 2]: the two directions along which the vectors differ most (PCA), so
    near words land near each other on a page."""
    centred = vectors - vectors.mean(axis=0)
    _, _, directions = np.linalg.svd(centred, full_matrices=False)
    return centred @ directions[:2].T
