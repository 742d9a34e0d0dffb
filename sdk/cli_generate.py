"""`deepserve generate --digit 7 -n 16 --out grid.png`: digits made by a served conditional
GAN, drawn side by side in one picture (a seed names each one: the same command gives the same
picture)."""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from . import cli_connection, generative
from .cli_tasks import guarded


def _run_generate(args: argparse.Namespace) -> int:
    client = cli_connection.client(args)
    digits = client.generate(digit=args.digit, n=args.n, seed=args.seed, model=args.model)
    picture = generative.grid(digits, columns=min(args.columns, len(digits)))
    Image.fromarray(picture).save(args.out)
    last = args.seed + len(digits) - 1
    print(f"wrote {args.out}: {len(digits)} digits '{args.digit}', seeds {args.seed}..{last}")
    return 0


def add_generate_command(commands: argparse._SubParsersAction) -> None:
    generate = commands.add_parser(
        "generate", help="digits of a class made by a served conditional GAN, as one picture"
    )
    generate.add_argument("--digit", type=int, required=True, help="the class, 0 to 9")
    generate.add_argument("-n", type=int, default=16, help="how many (1 to 64)")
    generate.add_argument("--seed", type=int, default=0, help="the first digit's seed")
    generate.add_argument("--columns", type=int, default=8, help="digits a row")
    generate.add_argument("--out", type=Path, default=Path("generated.png"), help="PNG to write")
    generate.add_argument(
        "--model", default=generative.GENERATOR, help="a class-conditional generator"
    )
    cli_connection.add_connection_options(generate)
    generate.add_argument("--timeout", type=float, default=30.0, help="seconds per call")
    generate.set_defaults(run=guarded(_run_generate))
