"""`deepserve act`: CartPole episodes played by a served policy, each step one call, with each
episode's return and the calls' time printed, and (`--gif`) the first episode drawn as an
animation, the action the server chose shown under the cart at each step. Needs gymnasium
(`pip install gymnasium`), which simulates the cart and the pole here."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from . import cli_connection
from .agents import LABELS, POLICY
from .cli_tasks import guarded
from .errors import DeepserveError

WIDTH, HEIGHT = 480, 240
SCALE = WIDTH / 4.8  # pixels a metre: the track is 4.8 m wide (the cart may go 2.4 m each way)
POLE_PIXELS = SCALE * 1.0  # the pole is 1 m long
CART_W, CART_H, TRACK_Y = 50, 26, 170


def draw_step(observation: np.ndarray, action: int, step: int) -> Image.Image:
    """One frame: the track, the cart where it is, the pole at its angle, the action."""
    x, _, angle, _ = (float(v) for v in observation)
    frame = Image.new("RGB", (WIDTH, HEIGHT), "white")
    pen = ImageDraw.Draw(frame)
    pen.line([(0, TRACK_Y), (WIDTH, TRACK_Y)], fill=(120, 120, 120), width=2)
    cart_x = WIDTH / 2 + x * SCALE
    top = TRACK_Y - CART_H
    pen.rectangle([cart_x - CART_W / 2, top, cart_x + CART_W / 2, TRACK_Y], fill=(40, 40, 40))
    tip = (cart_x + math.sin(angle) * POLE_PIXELS, top - math.cos(angle) * POLE_PIXELS)
    pen.line([(cart_x, top), tip], fill=(204, 153, 102), width=8)
    pen.ellipse([cart_x - 4, top - 4, cart_x + 4, top + 4], fill=(127, 127, 204))
    arrow = -1 if action == 0 else 1
    tail, head = cart_x - 18 * arrow, cart_x + 18 * arrow
    pen.line([(tail, TRACK_Y + 22), (head, TRACK_Y + 22)], fill=(200, 40, 40), width=4)
    pen.polygon(
        [(head + 8 * arrow, TRACK_Y + 22), (head, TRACK_Y + 15), (head, TRACK_Y + 29)],
        fill=(200, 40, 40),
    )
    pen.text((8, 8), f"step {step}   push {LABELS[action]}", fill=(0, 0, 0))
    return frame


def _environment():
    try:
        import gymnasium
    except ImportError:
        raise DeepserveError(
            "`deepserve act` simulates CartPole with gymnasium: pip install gymnasium"
        ) from None
    return gymnasium.make("CartPole-v1")


def _run_act(args: argparse.Namespace) -> int:
    client = cli_connection.client(args)
    env = _environment()
    frames: list[Image.Image] = []
    calls: list[float] = []
    for episode in range(args.episodes):
        observation, _ = env.reset(seed=args.seed + episode)
        total, done = 0.0, False
        while not done:
            started = time.perf_counter()
            chosen = client.act(observation, model=args.model)
            calls.append(time.perf_counter() - started)
            action = chosen.action  # type: ignore[union-attr]
            if args.gif and episode == 0 and int(total) % args.every == 0:
                frames.append(draw_step(observation, action, int(total)))
            observation, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        ending = "balanced to the end" if truncated else "the pole fell"
        print(f"episode {episode + 1} (seed {args.seed + episode}): return {total:.0f}, {ending}")
    env.close()
    ms = np.array(calls) * 1e3
    print(
        f"{len(calls)} calls to '{args.model}': p50 {np.percentile(ms, 50):.2f} ms, "
        f"p99 {np.percentile(ms, 99):.2f} ms"
    )
    if args.gif:
        frames[0].save(
            args.gif,
            save_all=True,
            append_images=frames[1:],
            duration=20 * args.every,  # CartPole's step is 0.02 s: played at real speed
            loop=0,
        )
        print(f"wrote {args.gif} ({len(frames)} frames of episode 1)")
    return 0


def add_agent_commands(commands: argparse._SubParsersAction) -> None:
    act = commands.add_parser(
        "act", help="CartPole episodes played by a served policy (a call a step), as a GIF"
    )
    act.add_argument("--model", default=POLICY, help="a policy taking `observation`")
    act.add_argument("--episodes", type=int, default=1, help="episodes to play")
    act.add_argument("--seed", type=int, default=1, help="the first episode's seed")
    act.add_argument("--gif", type=Path, help="write the first episode as an animated GIF")
    act.add_argument("--every", type=int, default=2, help="a GIF frame every N steps")
    cli_connection.add_connection_options(act)
    act.add_argument("--timeout", type=float, default=30.0, help="seconds per call")
    act.set_defaults(run=guarded(_run_act))
