"""`deepserve similar WORD... [-k 8] [--plot map.png]`: each word's nearest words by the served
word vectors, printed with their cosines, and drawn where a person would rather look: the
words and their neighbours on a 2-D projection of the space, one colour per word asked."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import cli_connection, embeddings
from .cli_tasks import guarded
from .drawing import palette

SIZE, MARGIN, LABEL_ROOM, TITLE_ROOM = 900, 50, 130, 40


def draw_projection(
    words: list[str], points: np.ndarray, groups: list[int], asked: int
) -> Image.Image:
    """Each word a dot with its name, coloured by the word asked it belongs to; the words
    asked in larger dots. A name that would cover one already written moves up or down."""
    canvas = Image.new("RGB", (SIZE, SIZE), "white")
    draw = ImageDraw.Draw(canvas)
    font, title = ImageFont.load_default(size=15), ImageFont.load_default(size=18)
    low, high = points.min(axis=0), points.max(axis=0)
    span = np.array([SIZE - 2 * MARGIN - LABEL_ROOM, SIZE - 2 * MARGIN - TITLE_ROOM])
    spots = MARGIN + (points - low) / np.maximum(high - low, 1e-9) * span + [0, TITLE_ROOM]
    colours = palette(asked)
    written: list[tuple[float, float, float, float]] = []
    for index, (word, (x, y), group) in enumerate(zip(words, spots, groups, strict=True)):
        colour = tuple(int(c * 0.8) for c in colours[group])
        radius = 7 if index < asked else 4
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
        label = word.upper() if index < asked else word
        for shift in (0, -16, 16, -32, 32, -48, 48):
            box = draw.textbbox((x + radius + 4, y - 9 + shift), label, font=font)
            if not any(_overlap(box, other) for other in written):
                break
        written.append(box)
        if shift:
            draw.line((x, y, box[0] - 2, (box[1] + box[3]) / 2), fill=colour)
        draw.text(box[:2], label, fill=colour, font=font, anchor="lt")
    heading = "nearest words, on the two directions the vectors differ most along (PCA)"
    draw.text((12, 12), heading, fill=(0, 0, 0), font=title)
    return canvas


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _run_similar(args: argparse.Namespace) -> int:
    client = cli_connection.client(args)
    asked: list[str] = args.words
    found = {
        w: client.similar(w, k=args.k, model=args.model, embedder=args.embedder) for w in asked
    }
    for word, near in found.items():
        print(f"{word}: " + ", ".join(f"{n.word} {n.score:.2f}" for n in near))
    if args.plot:
        words, groups = list(asked), list(range(len(asked)))
        for group, word in enumerate(asked):
            for neighbour in found[word]:
                if neighbour.word not in words:
                    words.append(neighbour.word)
                    groups.append(group)
        vectors = np.concatenate(
            [
                client.embed(words[i : i + 256], model=args.embedder)
                for i in range(0, len(words), 256)
            ]
        )
        picture = draw_projection(words, embeddings.projection(vectors), groups, len(asked))
        picture.save(args.plot)
        print(f"wrote {args.plot}: {len(words)} words")
    return 0


def add_embedding_commands(commands: argparse._SubParsersAction) -> None:
    similar = commands.add_parser(
        "similar", help="nearest words by the served word vectors, and a projection plot"
    )
    similar.add_argument("words", nargs="+", help="the words to look up")
    similar.add_argument("-k", type=int, default=8, help="nearest words each (1 to 31)")
    similar.add_argument("--plot", type=Path, help="PNG of the words on a 2-D projection")
    similar.add_argument("--model", default=embeddings.SEARCHER, help="the nearest-word search")
    similar.add_argument("--embedder", default=embeddings.EMBEDDER, help="words to vectors")
    cli_connection.add_connection_options(similar)
    similar.add_argument("--timeout", type=float, default=30.0, help="seconds per call")
    similar.set_defaults(run=guarded(_run_similar))
