"""The word-vector corpus and its pairs, in process: prose kept and code dropped, pairs that
never cross a paragraph nor reach past their window, and the served graphs' answers for known
and unknown words."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from deepserve.training import text_corpus
from deepserve.training.word_graphs import NEIGHBOURS, embed_graph, similar_graph, unit_rows

DOCS = Path(__file__).resolve().parents[2] / "tests" / "data" / "python-docs"

DOCUMENT = """\
.. _tut-if:

:keyword:`!if` Statements
=========================

Perhaps the most well-known statement is the :keyword:`if` statement.  For
example::

   >>> x = int(input("Please enter an integer: "))
   >>> if x < 0:
   ...     x = 0

There can be zero or more :keyword:`elif` parts, and the ``else`` part is
optional.

.. code-block:: python

   print("never read")

.. function:: len(s)

   Return the length (the number of items) of an object.
"""


def test_prose_is_kept_and_code_dropped() -> None:
    paragraphs = text_corpus.prose_paragraphs(DOCUMENT)
    assert paragraphs == [
        ["if", "statements"],
        [
            "perhaps",
            "the",
            "most",
            "well",
            "known",
            "statement",
            "is",
            "the",
            "if",
            "statement",
            "for",
            "example",
        ],
        [
            "there",
            "can",
            "be",
            "zero",
            "or",
            "more",
            "elif",
            "parts",
            "and",
            "the",
            "else",
            "part",
            "is",
            "optional",
        ],
        ["return", "the", "length", "the", "number", "of", "items", "of", "an", "object"],
    ]


def test_the_sample_corpus_holds_out_every_tenth_file() -> None:
    corpus = text_corpus.read_corpus(DOCS)
    assert (corpus.train_files, corpus.held_out_files) == (16, 1)
    assert corpus.train_words > 20_000 and corpus.held_out
    vocab = text_corpus.vocabulary(corpus.train, min_count=5, most=100)
    assert vocab.words[0] == "the" and len(vocab.words) == 100
    assert (np.diff(vocab.counts) <= 0).all()


def test_pairs_stay_in_their_paragraph_and_window() -> None:
    paragraphs = [np.arange(0, 6), np.arange(100, 104)]
    rng = np.random.default_rng(0)
    centers, contexts = text_corpus.skipgram_pairs(paragraphs, 2, rng, keep=None)
    assert len(centers) == len(contexts) > 0
    same_paragraph = (centers >= 100) == (contexts >= 100)
    assert same_paragraph.all()
    assert (np.abs(centers - contexts) <= 2).all() and (centers != contexts).all()
    # every pair at distance 1 is always drawn (a window is at least 1)
    adjacent = {(int(a), int(b)) for a, b in zip(centers, contexts, strict=True) if abs(a - b) == 1}
    assert len(adjacent) == 2 * (5 + 3)


def test_subsampling_thins_frequent_words_only() -> None:
    keep = text_corpus.keep_chances(np.array([1_000_000, 100, 1]), 1e-4)
    assert keep[0] < 0.02 and keep[1] == keep[2] == 1.0


def test_the_graphs_answer_known_and_unknown_words() -> None:
    words = [f"w{i}" for i in range(40)]
    vectors = np.random.default_rng(1).normal(size=(40, 8)).astype(np.float32)
    unit = unit_rows(vectors)
    embed = ort.InferenceSession(embed_graph(words, unit).SerializeToString())
    got, known = embed.run(None, {"word": np.array([["w3"], ["nope"], ["w39"]], object)})
    assert known.ravel().tolist() == [True, False, True]
    np.testing.assert_allclose(got[[0, 2]], unit[[3, 39]], atol=1e-6)
    assert not got[1].any()  # no made-up vector: zero, and flagged unknown
    similar = ort.InferenceSession(similar_graph(words, unit).SerializeToString())
    names, scores = similar.run(None, {"vector": vectors[[5]] * 3.0})  # length does not matter
    expected = np.argsort(-(unit @ unit[5]))[:NEIGHBOURS]
    assert names[0].tolist() == [words[i] for i in expected] and names[0][0] == "w5"
    np.testing.assert_allclose(scores[0], (unit @ unit[5])[expected], atol=1e-5)
