"""English prose for word embeddings, read from a folder of reStructuredText files (the Python
documentation's sources, as Debian's python3.X-doc package ships them under
/usr/share/doc/python3.X/html/_sources, or any folder of .txt / .rst files).

Only prose is kept: literal blocks (after `::`), code directives, interactive sessions,
directive lines and heading underlines are dropped, roles and markup are stripped. Words are
lower-case runs of letters (an apostrophe inside a word joins it: "don't"). Each paragraph is
one run of words: context windows never cross a paragraph.

Held out: every tenth file (sorted by path) is kept out of training whole, so held-out
measures are on documents the vectors never saw.
"""

from __future__ import annotations

import glob
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_SOURCES = "/usr/share/doc/python3*/html/_sources"
"""Where Debian's python3.X-doc package puts the documentation's reStructuredText sources."""
HELD_OUT_EVERY = 10

_CODE_DIRECTIVES = re.compile(
    r"^\.\.\s+(code-block|code|sourcecode|testcode|testoutput|doctest|productionlist|"
    r"highlight|literalinclude|csv-table|list-table|table|toctree|index|raw|only|"
    r"include|image|figure|audit-event|availability|impl-detail)::"
)
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_ROLE = re.compile(r":[a-z:+-]+:`!?~?([^`<]*?)(?:\s*<[^>]*>)?`")
_OPTION = re.compile(r"^:[\w-]+:(\s|$)")
_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+.:_])\1{2,}\s*$")


@dataclass(frozen=True)
class Corpus:
    train: list[list[str]]
    """Paragraphs of the training files, each a list of words."""
    held_out: list[list[str]]
    train_files: int
    held_out_files: int

    @property
    def train_words(self) -> int:
        return sum(map(len, self.train))


def source_files(folder: Path) -> list[Path]:
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.name.endswith((".txt", ".rst"))
    )
    if not files:
        raise FileNotFoundError(f"no .txt or .rst files under {folder}")
    return files


def default_folder() -> Path | None:
    """The newest python3.X-doc sources installed here, if any."""
    found = sorted(
        glob.glob(DEFAULT_SOURCES), key=lambda p: [int(n) for n in re.findall(r"\d+", p)]
    )
    return Path(found[-1]) if found else None


def describe(folder: Path) -> str:
    """ "the Python 3.11 documentation" for python3.11-doc's sources, else the folder's name."""
    found = re.search(r"python(\d+\.\d+)", str(folder))
    return f"the Python {found.group(1)} documentation" if found else f"the files of {folder.name}"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def prose_paragraphs(text: str) -> list[list[str]]:
    """The words of each prose paragraph of one reStructuredText document."""
    paragraphs: list[list[str]] = []
    current: list[str] = []
    skip_deeper_than: int | None = None  # inside a literal block or a code directive
    for raw in text.splitlines():
        line = raw.expandtabs(4).rstrip()
        stripped = line.strip()
        if skip_deeper_than is not None:
            if not stripped or _indent(line) > skip_deeper_than:
                continue
            skip_deeper_than = None
        if not stripped:
            if current:
                paragraphs.append(current)
                current = []
            continue
        if _CODE_DIRECTIVES.match(stripped) or stripped.startswith((">>>", "...")):
            skip_deeper_than = _indent(line)
            stripped = ""
        elif stripped.startswith("..") or _OPTION.match(stripped) or _UNDERLINE.match(stripped):
            continue  # a directive or its option, a comment, a heading's underline
        elif stripped.endswith("::"):
            skip_deeper_than = _indent(line)
            stripped = stripped[:-2]
        current.extend(_WORD.findall(_ROLE.sub(r"\1", stripped).replace("``", " ").lower()))
        if skip_deeper_than is not None and current:  # a code block ends the paragraph
            paragraphs.append(current)
            current = []
    if current:
        paragraphs.append(current)
    return [p for p in paragraphs if len(p) > 1]


def read_corpus(folder: Path) -> Corpus:
    files = source_files(folder)
    train: list[list[str]] = []
    held_out: list[list[str]] = []
    for index, path in enumerate(files):
        paragraphs = prose_paragraphs(path.read_text(encoding="utf-8", errors="replace"))
        (held_out if index % HELD_OUT_EVERY == HELD_OUT_EVERY - 1 else train).extend(paragraphs)
    return Corpus(
        train, held_out, len(files) - len(files) // HELD_OUT_EVERY, len(files) // HELD_OUT_EVERY
    )


@dataclass(frozen=True)
class Vocabulary:
    words: list[str]
    """Most frequent first."""
    counts: np.ndarray

    @property
    def index(self) -> dict[str, int]:
        return {word: i for i, word in enumerate(self.words)}


def vocabulary(paragraphs: list[list[str]], min_count: int, most: int) -> Vocabulary:
    counts = Counter(word for paragraph in paragraphs for word in paragraph)
    kept = [(w, c) for w, c in counts.most_common(most) if c >= min_count]
    return Vocabulary([w for w, _ in kept], np.array([c for _, c in kept], np.int64))


def encode(paragraphs: list[list[str]], index: dict[str, int]) -> list[np.ndarray]:
    """Each paragraph as word ids, words outside the vocabulary dropped."""
    encoded = [np.array([index[w] for w in p if w in index], np.int64) for p in paragraphs]
    return [ids for ids in encoded if len(ids) > 1]


def keep_chances(counts: np.ndarray, threshold: float) -> np.ndarray:
    """word2vec's subsampling: each occurrence of a word of frequency f stays with chance
    sqrt(t / f) + t / f (at most 1), so "the" and "a" stop drowning the pairs that teach."""
    frequency = counts / counts.sum()
    return np.minimum(1.0, np.sqrt(threshold / frequency) + threshold / frequency)


def skipgram_pairs(
    paragraphs: list[np.ndarray], window: int, rng: np.random.Generator, keep: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """(center, context) id pairs of one pass, all offsets at once: each center's window is
    drawn from 1..window; pairs never cross a paragraph; `keep` is each word's chance to stay
    (subsampling), None to keep all."""
    ids = np.concatenate(paragraphs)
    para = np.repeat(np.arange(len(paragraphs)), [len(p) for p in paragraphs])
    if keep is not None:
        stays = rng.random(len(ids)) < keep[ids]
        ids, para = ids[stays], para[stays]
    reach = rng.integers(1, window + 1, len(ids))
    centers, contexts = [], []
    for offset in range(1, window + 1):
        same = para[:-offset] == para[offset:]
        left = same & (reach[:-offset] >= offset)  # center before its context
        right = same & (reach[offset:] >= offset)  # center after its context
        centers += [ids[:-offset][left], ids[offset:][right]]
        contexts += [ids[offset:][left], ids[:-offset][right]]
    return np.concatenate(centers), np.concatenate(contexts)
