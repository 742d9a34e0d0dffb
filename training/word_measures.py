"""Held-out measures of word vectors:

- **Context prediction** on the held-out documents, the task skip-gram trains for: for each
  (word, a word within 2 of it) pair there, drawn as training draws its pairs (frequent words
  subsampled), the true neighbour against a word drawn from the
  unigram distribution to the 0.75 (the same noise training used), scored by the word's
  vector against their context vectors: the share of pairs where the true one scores higher
  (an AUC: 0.5 is chance). The same with a popularity scorer (the more frequent word wins)
  is printed beside it, so the figure shows what the vectors add beyond word counts.
- **Category purity**, on the vectors as served (unit length, cosine): CATEGORIES, words
  grouped by meaning and written down before training; for each of them in the vocabulary,
  whether its nearest word among all the listed ones is of its own group (chance: the
  group's share of the list).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .text_corpus import Corpus, Vocabulary, encode, keep_chances, skipgram_pairs

CATEGORIES: dict[str, list[str]] = {
    "numbers": ["one", "two", "three", "four", "five", "six", "seven", "eight", "ten"],
    "weekdays": ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"],
    "months": ["january", "february", "april", "june", "july", "august", "september",
               "october", "november", "december"],
    "numeric types": ["integer", "float", "complex", "decimal", "fraction"],
    "containers": ["list", "tuple", "dictionary", "set", "frozenset", "deque"],
    "platforms": ["windows", "linux", "unix", "macos", "posix", "solaris", "freebsd"],
    "time units": ["seconds", "minutes", "hours", "days", "microseconds", "milliseconds"],
    "colours": ["red", "green", "blue", "yellow", "black", "white"],
    "file operations": ["read", "write", "open", "close", "flush", "seek"],
}  # fmt: skip
PROBES = ["seven", "integer", "windows", "monday", "socket", "thread"]
HELD_OUT_WINDOW = 2
SUBSAMPLE = 1e-4
"""word2vec's subsampling threshold t, for training and for the held-out pairs alike."""
MOST_PAIRS = 200_000


@dataclass(frozen=True)
class Measures:
    context_auc: float
    popularity_auc: float
    held_out_pairs: int
    purity: float
    purity_chance: float
    purity_words: int
    by_category: dict[str, float]
    neighbours: dict[str, list[str]]

    def summary(self) -> str:
        return (
            f"held-out context prediction {self.context_auc:.3f} (word counts alone "
            f"{self.popularity_auc:.3f}, chance 0.5); category purity {self.purity:.3f} of "
            f"{self.purity_words} words (chance {self.purity_chance:.3f})"
        )

    def report(self) -> dict:
        return {
            "held_out_context_auc": self.context_auc,
            "held_out_popularity_auc": self.popularity_auc,
            "held_out_pairs": self.held_out_pairs,
            "category_purity": self.purity,
            "category_purity_chance": self.purity_chance,
            "category_words": self.purity_words,
            "category_purity_by_category": self.by_category,
            "neighbours": self.neighbours,
        }

    def card(self) -> str:
        table = ", ".join(f"{name} {share:.2f}" for name, share in self.by_category.items())
        near = "; ".join(f"**{w}**: {', '.join(n)}" for w, n in self.neighbours.items())
        return (
            f"Held-out context prediction (documents never trained on, {self.held_out_pairs:,} "
            f"pairs of words within {HELD_OUT_WINDOW} of each other, frequent words subsampled as "
            "in training, each against a noise "
            f"word): the true neighbour scores higher in {self.context_auc:.3f} of "
            f"them; ranking by word counts alone gets {self.popularity_auc:.3f}, chance 0.5. "
            f"Category purity ({self.purity_words} words in {len(self.by_category)} groups "
            "listed in training/word_measures.py before training): the nearest listed word "
            f"is of the same group for {self.purity:.3f} of them (chance "
            f"{self.purity_chance:.3f}); by group: {table}. Nearest words: {near}."
        )


def _held_out_pairs(
    corpus: Corpus, vocab: Vocabulary, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of the held-out documents drawn as training draws them (frequent words
    subsampled, a window of 1 to HELD_OUT_WINDOW), at most MOST_PAIRS."""
    keep = keep_chances(vocab.counts, SUBSAMPLE)
    center, context = skipgram_pairs(
        encode(corpus.held_out, vocab.index), HELD_OUT_WINDOW, rng, keep
    )
    if len(center) > MOST_PAIRS:
        chosen = rng.choice(len(center), MOST_PAIRS, replace=False)
        center, context = center[chosen], context[chosen]
    return center, context


def _auc(true_scores: np.ndarray, noise_scores: np.ndarray) -> float:
    """P(true > noise), ties counted half."""
    return float(np.mean(true_scores > noise_scores) + 0.5 * np.mean(true_scores == noise_scores))


def measure(
    corpus: Corpus, vocab: Vocabulary, unit: np.ndarray, context_vectors: np.ndarray, seed: int
) -> Measures:
    rng = np.random.default_rng(seed + 1)
    center, context = _held_out_pairs(corpus, vocab, rng)
    weights = vocab.counts.astype(np.float64) ** 0.75
    noise = rng.choice(len(vocab.words), len(center), p=weights / weights.sum())
    score = lambda a, b: np.einsum("nd,nd->n", unit[a], context_vectors[b])  # noqa: E731
    context_auc = _auc(score(center, context), score(center, noise))
    popularity_auc = _auc(vocab.counts[context], vocab.counts[noise])

    index = vocab.index
    listed = [(w, name) for name, ws in CATEGORIES.items() for w in ws if w in index]
    if len({name for _, name in listed}) < 2:
        raise ValueError(f"the vocabulary has too few of the listed words to measure: {listed}")
    vectors = unit[[index[w] for w, _ in listed]]
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    nearest = similarity.argmax(1)
    same = np.array([listed[i][1] == listed[j][1] for i, j in enumerate(nearest)])
    groups = [name for _, name in listed]
    chance = float(np.mean([(groups.count(g) - 1) / (len(groups) - 1) for g in groups]))
    by_category = {
        name: float(same[[g == name for g in groups]].mean())
        for name in CATEGORIES
        if name in groups
    }
    neighbours = {}
    for word in PROBES:
        if word in index:
            order = np.argsort(-(unit @ unit[index[word]]))
            neighbours[word] = [vocab.words[i] for i in order[1:9]]
    return Measures(
        context_auc=context_auc,
        popularity_auc=popularity_auc,
        held_out_pairs=len(center),
        purity=float(same.mean()),
        purity_chance=chance,
        purity_words=len(listed),
        by_category=by_category,
        neighbours=neighbours,
    )
