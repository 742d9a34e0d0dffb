"""The CartPole policy's act loop at concurrency 1: each step of an episode is one call, so the
time a call takes is the agent's reaction time. The same episodes are run with the policy in
process (ONNX Runtime, one thread) and through the server (the SDK's `act` over gRPC, one
channel); per step, the p50 / p99 of the call alone (the simulation's own step is not
counted), and each episode's return: the served policy must balance the pole as the graph
does (at least 475 on average over 100 held-out episodes).

    python -m loadtests.act_bench --episodes 100 --out docs/benchmarks
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import onnxruntime as ort

from deepserve import Client

from .figures import write_json
from .local_server import run_server

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "models" / "cartpole_policy"
FIRST_SEED = 100_000  # the training report's held-out episodes


def episodes(act: Callable[[np.ndarray], int], count: int) -> tuple[list[float], list[float]]:
    """Each episode's return and every call's seconds."""
    env = gym.make("CartPole-v1")
    returns, calls = [], []
    for seed in range(FIRST_SEED, FIRST_SEED + count):
        observation, _ = env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            started = time.perf_counter()
            action = act(observation)
            calls.append(time.perf_counter() - started)
            observation, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns, calls


def summary(way: str, returns: list[float], calls: list[float]) -> dict[str, Any]:
    ms = np.array(calls) * 1e3
    return {
        "way": way,
        "episodes": len(returns),
        "mean_return": float(np.mean(returns)),
        "min_return": float(np.min(returns)),
        "calls": len(calls),
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--out", type=Path, help="folder for act-bench-<model>-cpu.json")
    args = parser.parse_args(argv)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        str(args.model_dir / "1" / "model.onnx"), options, providers=["CPUExecutionProvider"]
    )

    def in_process(observation: np.ndarray) -> int:
        feed = {"observation": observation[None].astype(np.float32)}
        return int(session.run(["action"], feed)[0][0, 0])

    rows = [summary("in-process", *episodes(in_process, args.episodes))]
    with tempfile.TemporaryDirectory() as scratch:
        models = Path(scratch) / "models"
        shutil.copytree(args.model_dir, models / args.model_dir.name)
        with run_server(models, Path(scratch)) as server, Client(server.url) as client:
            client.act([0.0, 0.0, 0.0, 0.0])  # the channel connected before the clock starts

            def served(observation: np.ndarray) -> int:
                return client.act(observation, model=args.model_dir.name).action  # type: ignore[union-attr]

            rows.append(summary("server (SDK act, gRPC)", *episodes(served, args.episodes)))
    for row in rows:
        print(
            f"{row['way']:<24} mean return {row['mean_return']:6.1f} (min {row['min_return']:.0f}) "
            f"over {row['episodes']} episodes; a step's call p50 {row['p50_ms']:.3f} ms, "
            f"p99 {row['p99_ms']:.3f} ms ({row['calls']} calls)"
        )
    print(
        f"through the server a step's call takes {rows[1]['p50_ms'] - rows[0]['p50_ms']:.3f} ms "
        "more at p50 than in process"
    )
    if args.out:
        write_json({"model": args.model_dir.name, "rows": rows}, args.out / "act-bench-cpu.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
