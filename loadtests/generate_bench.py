"""The date translator under load, continuous against request-level batching, side by side in
one run: one server serves the model twice, `date_translator` (continuous: answers join and
leave the step batch at every step) and `date_translator_request` (request-level: a batch is
formed when the last has ended). C clients each keep one streamed request in flight over a
gRPC ModelStreamInfer stream of their own, with mixed answer lengths (each request's
max_tokens drawn from 1..11, as generation benchmarks draw output lengths); per mode and
concurrency: tokens/s, requests/s, time to first token and to the last (p50, p99), and the
average step batch (the model's statistics), and the server's own CPU a token (from /proc: the
client, on the same cores, is not counted). `--answers whole` asks for one response with the
whole answer instead of a response a token (first token = last).

`--frontends N` splits the server (N front-end processes take the transport, the engine runs
the decode loop) and the engine's own CPU a token is reported beside the server's: where front
ends and clients have cores of their own (`--load-processes P` spreads the clients over P
processes), the engine is what bounds tokens/s.

    python -m loadtests.generate_bench --concurrency 1,16,64 --duration 10 --out docs/benchmarks
    python -m loadtests.generate_bench --answers whole --out docs/benchmarks
    python -m loadtests.generate_bench --frontends 4 --load-processes 4 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from deepserve import generation
from deepserve.training import dates

from .figures import int_list, write_json
from .local_server import run_server
from .split_bench import cpu_by_role
from .spread_load import SpreadLoad

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "models" / "date_translator"
MODES = {"continuous": "date_translator", "request": "date_translator_request"}
MOST_TOKENS = 11


def repository(model_dir: Path, scratch: Path, max_active: int) -> Path:
    """The model twice, alike but for its batching mode."""
    models = scratch / "models"
    for mode, name in MODES.items():
        target = models / name
        shutil.copytree(model_dir, target)
        config = (model_dir / "config.pbtxt").read_text()
        config += (
            f'\nparameters {{ key: "batching" value {{ string_value: "{mode}" }} }}\n'
            f'parameters {{ key: "max_active" value {{ string_value: "{max_active}" }} }}\n'
        )
        (target / "config.pbtxt").write_text(config.replace(f'name: "{model_dir.name}"', ""))
    return models


async def _client(
    stub: pb_grpc.GRPCInferenceServiceStub,
    model: str,
    texts: list[str],
    seed: int,
    stop_at: float,
    record: dict[str, list[float]],
    stream: bool = True,
) -> None:
    """One client: a request at a time on its own stream. Streamed, each token is a response
    (the first timed); whole, the one response holds the answer."""
    rng = random.Random(seed)
    call = stub.ModelStreamInfer()
    try:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            text, most = rng.choice(texts), rng.randint(1, MOST_TOKENS)
            await call.write(generation.request(model, text, stream, most))
            tokens = 0
            while True:
                response = await call.read()
                if response.error_message:
                    raise RuntimeError(response.error_message)
                answer = response.infer_response
                final = answer.parameters["triton_final_response"].bool_param
                if answer.outputs:
                    if tokens == 0:
                        record["first"].append(time.perf_counter() - started)
                    # a token a response, or the whole text (its 4-byte length first)
                    tokens += 1 if stream else len(answer.raw_output_contents[0]) - 4
                if final:
                    break
            record["last"].append(time.perf_counter() - started)
            record["tokens"].append(tokens)
    finally:
        await call.done_writing()
        call.cancel()


async def _statistics(stub: pb_grpc.GRPCInferenceServiceStub, model: str) -> tuple[int, int]:
    stats = (await stub.ModelStatistics(pb.ModelStatisticsRequest(name=model))).model_stats[0]
    return stats.inference_count, stats.execution_count


Record = dict[str, list[float]]


async def _clients(
    url: str,
    model: str,
    seeds: list[int],
    texts: list[str],
    stream: bool,
    measure_from: float,
    stop_at: float,
) -> Record:
    """`seeds`' clients on one channel: warming up until `measure_from`, then measured until
    `stop_at` (perf_counter times: one clock for every process on Linux)."""
    async with grpc.aio.insecure_channel(url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        warm: Record = {"first": [], "last": [], "tokens": []}
        await asyncio.gather(
            *(_client(stub, model, texts, -1 - seed, measure_from, warm) for seed in seeds)
        )
        record: Record = {"first": [], "last": [], "tokens": []}
        await asyncio.gather(
            *(_client(stub, model, texts, seed, stop_at, record, stream) for seed in seeds)
        )
    return record


def _clients_in_process(*arguments: Any) -> Record:
    return asyncio.run(_clients(*arguments))


async def measure(
    url: str,
    model: str,
    concurrency: int,
    duration: float,
    texts: list[str],
    warmup: float = 1.0,
    stream: bool = True,
    pid: int | None = None,
    spread: SpreadLoad | None = None,
) -> dict[str, Any]:
    """One mode at one concurrency; with `spread`, the clients are split over its processes,
    which warm up and measure over the same stretch of time."""
    # A second more with client processes: the first point's imports this module in each.
    measure_from = time.perf_counter() + warmup + (1.0 if spread else 0.0)
    stop_at = measure_from + duration

    def share(seeds: list[int]) -> tuple[Any, ...]:
        return url, model, seeds, texts, stream, measure_from, stop_at

    everyone = list(range(concurrency))
    if spread is None:
        tasks = [asyncio.ensure_future(_clients(*share(everyone)))]
    else:
        parts = [everyone[k :: spread.processes] for k in range(spread.processes)]
        tasks = [
            asyncio.wrap_future(spread.submit(_clients_in_process, *share(part)))
            for part in parts
            if part
        ]
    async with grpc.aio.insecure_channel(url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        await asyncio.sleep(max(measure_from - time.perf_counter(), 0.0))
        before = await _statistics(stub, model)
        cpu_before = cpu_by_role(pid) if pid else {}
        records = await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - measure_from
        cpu_after = cpu_by_role(pid) if pid else {}
        after = await _statistics(stub, model)
    record = {key: [v for r in records for v in r[key]] for key in ("first", "last", "tokens")}
    cpu = {role: cpu_after[role] - cpu_before[role] for role in cpu_after}
    cpu_s = sum(cpu.values())
    # One process: the engine is the whole server.
    engine_s = cpu["engine"] if cpu.get("engine") else cpu_s
    tokens = max(sum(record["tokens"]), 1)
    steps = after[1] - before[1]
    first, last = np.array(record["first"]) * 1e3, np.array(record["last"]) * 1e3
    return {
        "answers": "streamed" if stream else "whole",
        "concurrency": concurrency,
        "requests": len(record["last"]),
        "tokens": int(sum(record["tokens"])),
        "tokens_per_s": sum(record["tokens"]) / elapsed,
        "requests_per_s": len(record["last"]) / elapsed,
        "first_token_p50_ms": float(np.percentile(first, 50)),
        "first_token_p99_ms": float(np.percentile(first, 99)),
        "last_token_p50_ms": float(np.percentile(last, 50)),
        "last_token_p99_ms": float(np.percentile(last, 99)),
        "average_step_batch": (after[0] - before[0]) / steps if steps else 0.0,
        # the server's own CPU (all its processes and threads; the client's is not counted)
        "server_cpu_cores": cpu_s / elapsed,
        "server_cpu_us_per_token": cpu_s * 1e6 / tokens,
        "engine_cpu_us_per_token": engine_s * 1e6 / tokens,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    parser.add_argument("--concurrency", type=int_list, default=[1, 16, 64])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each")
    parser.add_argument("--max-active", type=int, default=64, help="answers a step batch holds")
    parser.add_argument(
        "--answers",
        choices=["streamed", "whole"],
        default="streamed",
        help="a response a token (time to first token measured), or one with the whole answer",
    )
    parser.add_argument("--device", default="cpu", help="the server's --device (cpu, cuda)")
    parser.add_argument(
        "--frontends", type=int, default=0, help="server front-end processes (0: one process)"
    )
    parser.add_argument(
        "--load-processes", type=int, default=1, help="client processes the streams share"
    )
    parser.add_argument("--out", type=Path, help="folder for generate-bench-<answers>.json")
    args = parser.parse_args(argv)
    texts = [text for text, _ in dates.examples(500, 7, dates.TRAIN_FORMATS)]
    rows = []
    flags = ["--device", args.device]
    if args.frontends:
        flags += ["--frontends", str(args.frontends)]
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        models = repository(args.model_dir, scratch, args.max_active)
        spread = None
        if args.load_processes > 1:
            spread = SpreadLoad(args.load_processes)
            stack.callback(spread.close)
        server = stack.enter_context(run_server(models, scratch, *flags, timeout=120))
        for concurrency in args.concurrency:
            for mode, model in MODES.items():
                row = {"mode": mode} | asyncio.run(
                    measure(
                        server.url,
                        model,
                        concurrency,
                        args.duration,
                        texts,
                        args.warmup,
                        args.answers == "streamed",
                        server.process.pid,
                        spread,
                    )
                )
                rows.append(row)
                _print_row(row, args.frontends > 0)
    for concurrency in args.concurrency:
        pair = {r["mode"]: r for r in rows if r["concurrency"] == concurrency}
        ratio = pair["continuous"]["tokens_per_s"] / pair["request"]["tokens_per_s"]
        cost = "engine" if args.frontends else "server"
        cpu = (
            pair["request"][f"{cost}_cpu_us_per_token"]
            / pair["continuous"][f"{cost}_cpu_us_per_token"]
        )
        print(
            f"c={concurrency}: continuous / request-level tokens/s = {ratio:.2f}x; "
            f"{cost} CPU a token, request-level / continuous = {cpu:.2f}x"
        )
    if args.out:
        suffix = "" if args.device == "cpu" else f"-{args.device}"
        suffix += f"-frontends{args.frontends}" if args.frontends else ""
        write_json(
            {
                "device": args.device,
                "frontends": args.frontends,
                "load_processes": args.load_processes,
                "rows": rows,
            },
            args.out / f"generate-bench-{args.answers}{suffix}.json",
        )
    return 0


def _print_row(row: dict[str, Any], split: bool) -> None:
    engine = f", engine {row['engine_cpu_us_per_token']:5.0f}" if split else ""
    print(
        f"{row['mode']:>10} c={row['concurrency']:<3} {row['tokens_per_s']:8.0f} tokens/s "
        f"{row['requests_per_s']:7.1f} req/s  first token p50 "
        f"{row['first_token_p50_ms']:6.1f} ms p99 {row['first_token_p99_ms']:6.1f}"
        f"  last p50 {row['last_token_p50_ms']:6.1f} ms p99 "
        f"{row['last_token_p99_ms']:6.1f}  step batch "
        f"{row['average_step_batch']:5.1f}  server CPU "
        f"{row['server_cpu_us_per_token']:5.0f}{engine} us/token "
        f"({row['server_cpu_cores']:.2f} cores)",
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
