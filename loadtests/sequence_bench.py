"""The LSTM digit reader under load: C sequences at once, each reading a real held-out digit
one row a request (28 requests a digit, then the next digit), through tritonclient's asyncio
gRPC client with its sequence calls. Per-request latency (p50, p99), digits (sequences) read
per second, and the model's average batch (its statistics: rows of different sequences that
were ready at once shared a run).

    python -m loadtests.sequence_bench --concurrency 1,64 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import itertools
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio

from deepserve.training.mnist_data import read_idx

from .figures import int_list, write_json
from .local_server import local_server

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "mnist"
MODEL = "lstm_reader"


def held_out_digits() -> np.ndarray:
    data = (SAMPLE / "t10k-images-idx3-ubyte-8000-8499.gz").read_bytes()
    return read_idx(gzip.decompress(data))


async def _reader(
    client: triton_aio.InferenceServerClient,
    digits: np.ndarray,
    ids: itertools.count,
    stop_at: float,
    latencies: list[float],
    finished: list[int],
) -> None:
    while time.perf_counter() < stop_at:
        sequence_id = next(ids)
        image = digits[sequence_id % len(digits)]
        for row in range(28):
            tensor = triton_aio.InferInput("rows", [1, 1, 28], "UINT8")
            tensor.set_data_from_numpy(image[None, row : row + 1])
            started = time.perf_counter()
            await client.infer(
                MODEL,
                [tensor],
                sequence_id=sequence_id,
                sequence_start=row == 0,
                sequence_end=row == 27,
            )
            latencies.append((time.perf_counter() - started) * 1e3)
        finished.append(sequence_id)


async def run_point(url: str, digits: np.ndarray, concurrency: int, duration: float) -> dict:
    client = triton_aio.InferenceServerClient(url)
    ids = itertools.count(1 + concurrency * 1_000_000)
    try:
        warm: list[float] = []
        await asyncio.gather(
            *(
                _reader(client, digits, ids, time.perf_counter() + 0.5, warm, [])
                for _ in range(concurrency)
            )
        )
        latencies: list[float] = []
        finished: list[int] = []
        started = time.perf_counter()
        await asyncio.gather(
            *(
                _reader(client, digits, ids, started + duration, latencies, finished)
                for _ in range(concurrency)
            )
        )
        seconds = time.perf_counter() - started
    finally:
        await client.close()
    return {
        "concurrency": concurrency,
        "rows": len(latencies),
        "rows_per_s": len(latencies) / seconds,
        "digits_per_s": len(finished) / seconds,
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
    }


def _batch_counts(url: str) -> tuple[int, int]:
    client = triton.InferenceServerClient(url)
    stats = client.get_inference_statistics(MODEL).model_stats[0]
    client.close()
    return stats.inference_count, stats.execution_count


def run(args: argparse.Namespace) -> dict[str, Any]:
    digits = held_out_digits()
    with tempfile.TemporaryDirectory() as scratch:
        # The reader alone: the other bundled models would only slow the start.
        shutil.copytree(args.model_repository / MODEL, Path(scratch) / MODEL)
        rows = _measure(Path(scratch), args, digits)
    return {"model": MODEL, "duration_s": args.duration, "rows": rows}


def _measure(repository: Path, args: argparse.Namespace, digits: np.ndarray) -> list[dict]:
    rows = []
    with local_server(repository, repository / "server.log", "--log-level", "WARNING") as url:
        for concurrency in args.concurrency:
            before = _batch_counts(url)
            point = asyncio.run(run_point(url, digits, concurrency, args.duration))
            after = _batch_counts(url)
            runs = after[1] - before[1]
            point["avg_batch"] = (after[0] - before[0]) / runs if runs else 0.0
            rows.append(point)
            print(
                f"  c={concurrency:<3d} per row p50 {point['p50_ms']:.2f} ms  p99 "
                f"{point['p99_ms']:.2f} ms  {point['rows_per_s']:.0f} rows/s  "
                f"{point['digits_per_s']:.1f} digits/s  avg batch {point['avg_batch']:.1f}",
                flush=True,
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-repository", type=Path, default=ROOT / "models")
    parser.add_argument("--concurrency", type=int_list, default=[1, 64])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument(
        "--out", type=Path, default=None, help="write sequence-lstm_reader-cpu.json"
    )
    args = parser.parse_args(argv)
    report = run(args)
    if args.out is not None:
        write_json(report, args.out / f"sequence-{MODEL}-cpu.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
