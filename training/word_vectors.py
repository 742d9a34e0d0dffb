"""Skip-gram word vectors with negative sampling (word2vec's SGNS), trained on the prose of
the Python documentation, served as `word_embed` (words -> vectors) and `word_similar`
(vector -> nearest words).

Each word predicts the words around it (a window of 1 to 5, drawn per word as word2vec does);
each true context word is scored against 5 words drawn from the unigram distribution to the
power 0.75; frequent words are subsampled (t = 1e-4). The served vectors are the input
embeddings, scaled to unit length, so a cosine is a dot product.

Held-out measures (training/word_measures.py): context prediction on the documents kept out of
training, and nearest-neighbour category purity on a word list written down in advance.

    python -m deepserve.training.word_vectors --text /usr/share/doc/python3.11/html/_sources \
        --out models
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import text_corpus, word_measures
from .model_files import cpu_session, onnx_size_mb, write_model_card, write_report
from .text_corpus import Corpus, Vocabulary, keep_chances, skipgram_pairs
from .word_graphs import EMBED, NEIGHBOURS, SIMILAR, unit_rows, write_models

DIMENSIONS = 64
WINDOW = 5
NEGATIVES = 5
SUBSAMPLE = word_measures.SUBSAMPLE
MIN_COUNT = 5
MOST_WORDS = 12_000


class SkipGram(nn.Module):
    def __init__(self, words: int, dims: int) -> None:
        super().__init__()
        self.center = nn.Embedding(words, dims)
        self.context = nn.Embedding(words, dims)
        nn.init.uniform_(self.center.weight, -0.5 / dims, 0.5 / dims)
        nn.init.zeros_(self.context.weight)

    def forward(self, center: torch.Tensor, context: torch.Tensor, noise: torch.Tensor):  # type: ignore[no-untyped-def]
        """The SGNS loss of a batch: true pairs pulled together, noise pairs pushed apart."""
        c = self.center(center)  # [B, D]
        positive = (c * self.context(context)).sum(1)
        negative = torch.bmm(self.context(noise), c[:, :, None]).squeeze(2)  # [B, NEGATIVES]
        return -(F.logsigmoid(positive).mean() + F.logsigmoid(-negative).sum(1).mean())


def noise_distribution(counts: np.ndarray) -> np.ndarray:
    weights = counts.astype(np.float64) ** 0.75
    return weights / weights.sum()


def train(
    encoded: list[np.ndarray], vocab: Vocabulary, epochs: int, seed: int
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """The center (served) and context vectors, and the loss of each epoch."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    keep = keep_chances(vocab.counts, SUBSAMPLE)
    noise = torch.from_numpy(noise_distribution(vocab.counts))
    model = SkipGram(len(vocab.words), DIMENSIONS)
    optimizer = torch.optim.SparseAdam(list(model.parameters()), lr=0.003)
    model.center.sparse = model.context.sparse = True
    losses = []
    for epoch in range(epochs):
        centers, contexts = skipgram_pairs(encoded, WINDOW, rng, keep)
        order = torch.from_numpy(rng.permutation(len(centers)))
        center_t, context_t = torch.from_numpy(centers), torch.from_numpy(contexts)
        total, batches = 0.0, 0
        for batch in order.split(4096):
            drawn = torch.multinomial(noise, len(batch) * NEGATIVES, replacement=True)
            loss = model(center_t[batch], context_t[batch], drawn.view(len(batch), NEGATIVES))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, batches = total + loss.item(), batches + 1
        losses.append(total / max(batches, 1))
        print(
            f"epoch {epoch + 1}/{epochs}: {len(centers):,} pairs, loss {losses[-1]:.4f}", flush=True
        )
    weights = (model.center.weight, model.context.weight)
    return weights[0].detach().numpy().copy(), weights[1].detach().numpy().copy(), losses


def parity(words: list[str], vectors: np.ndarray, embed: Path, similar: Path) -> float:
    """The largest difference between NumPy's answers and ONNX Runtime's, for embed (vectors)
    and for similar (cosines of the nearest words, and the words themselves must match)."""
    unit = unit_rows(vectors)
    probe = words[:: max(1, len(words) // 50)]
    got, known = cpu_session(embed).run(None, {"word": np.array(probe, object)[:, None]})
    index = {w: i for i, w in enumerate(words)}
    expected = unit[[index[w] for w in probe]]
    gap = float(np.abs(got - expected).max())
    assert known.all()
    names, scores = cpu_session(similar).run(["word", "score"], {"vector": expected})
    cosines = expected @ unit.T
    best = np.argsort(-cosines, axis=1)[:, :NEIGHBOURS]
    gap = max(gap, float(np.abs(np.take_along_axis(cosines, best, 1) - scores).max()))
    # Ties aside, the same words in the same order: compare the first of each row.
    if [row[0] for row in names] != [words[row[0]] for row in best]:
        raise AssertionError("ONNX Runtime's nearest words differ from NumPy's")
    return gap


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--text", type=Path, default=text_corpus.default_folder(),
        help="folder of reStructuredText / text files (default: the newest python3.X-doc "
        "sources installed, " + text_corpus.DEFAULT_SOURCES + ")",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("models"), help="model repository")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--quick", action="store_true", help="one epoch, min count 2, for tests")
    args = parser.parse_args(argv)
    if args.text is None:
        parser.error("no --text folder and no python3.X-doc installed (apt install python3-doc)")
    if args.threads:
        torch.set_num_threads(args.threads)
    corpus: Corpus = text_corpus.read_corpus(args.text)
    min_count = 2 if args.quick else MIN_COUNT
    epochs = 1 if args.quick else args.epochs
    vocab = text_corpus.vocabulary(corpus.train, min_count, MOST_WORDS)
    encoded = text_corpus.encode(corpus.train, vocab.index)
    started = time.perf_counter()
    vectors, context, losses = train(encoded, vocab, epochs, args.seed)
    seconds = time.perf_counter() - started
    embed, similar = write_models(vocab.words, vectors, args.out)
    gap = parity(vocab.words, vectors, embed, similar)
    measures = word_measures.measure(corpus, vocab, unit_rows(vectors), context, args.seed)
    print(
        f"{EMBED} / {SIMILAR}: {len(vocab.words):,} words x {DIMENSIONS}; {measures.summary()}; "
        f"NumPy vs ONNX Runtime max difference {gap:.2e}; trained {seconds:.0f} s"
    )
    report = {
        "models": [EMBED, SIMILAR],
        "words": len(vocab.words),
        "dimensions": DIMENSIONS,
        "train_words": corpus.train_words,
        "train_files": corpus.train_files,
        "held_out_files": corpus.held_out_files,
        "epochs": epochs,
        "losses": losses,
        "seed": args.seed,
        "train_seconds": seconds,
        "parity_max_difference": gap,
        **measures.report(),
    }
    sections = {
        "What": "Skip-gram word vectors with negative sampling (word2vec's SGNS: windows of 1 "
        f"to {WINDOW}, {NEGATIVES} noise words from the unigram distribution to the 0.75, "
        f"frequent words subsampled at t = {SUBSAMPLE:g}), {DIMENSIONS} dimensions, "
        f"the {len(vocab.words):,} words seen at least {min_count} times. `{EMBED}` maps "
        f"words to unit vectors; `{SIMILAR}` returns the {NEIGHBOURS} words of highest cosine "
        "to a vector, the search inside its graph (batched by the server).",
        "Input / output": f"`{EMBED}`: `word` BYTES [N, 1] (UTF-8) -> `vector` FP32 [N, "
        f"{DIMENSIONS}] and `known` BOOL [N, 1] (false: not in the vocabulary, and its vector "
        f"is zero). `{SIMILAR}`: `vector` FP32 [N, {DIMENSIONS}] (finite) -> `word` BYTES "
        f"[N, {NEIGHBOURS}] and `score` FP32 [N, {NEIGHBOURS}] (cosines, best first).",
        "Data": f"The prose of {text_corpus.describe(args.text)}: the reStructuredText "
        "sources as Debian's python3.X-doc package installs "
        f"them ({corpus.train_files} files, {corpus.train_words:,} words trained on; "
        f"{corpus.held_out_files} files, every tenth, held out). Code, directives and markup "
        "dropped. The Python documentation is Copyright (c) 2001-2023 Python "
        "Software Foundation, under the PSF License Agreement (its full text is in the "
        "package's copyright file and in the documentation's license page).",
        "Command": "`python -m deepserve.training.word_vectors --text "
        f"/usr/share/doc/python3.X/html/_sources --out models` (epochs {epochs}, seed "
        f"{args.seed}, {seconds:.0f} s on 2 CPU cores)",
        "Metrics": measures.card(),
        "Parity": f"NumPy against ONNX Runtime, vectors and nearest-word cosines: max "
        f"difference {gap:.2e}; the nearest word of each probe is the same.",
        "Size": f"{onnx_size_mb(embed):.2f} MB + {onnx_size_mb(similar):.2f} MB.",
    }
    for name in (EMBED, SIMILAR):
        write_report(args.out / name, report)
        write_model_card(args.out / name, f"{name}: word vectors of the Python docs", sections)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
