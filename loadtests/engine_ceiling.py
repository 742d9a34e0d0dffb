"""How many requests one split-server engine takes from its front ends: the engine alone, fed
as fast as its socket allows, so a front-end count can be checked against it.

A driver in this process speaks the front ends' wire protocol to an engine process started on
the model's no-op (or batching) variant. It keeps --windows jobs outstanding, each job carrying
--job-sizes one-image requests (a front end under load merges that many into one job), checks
that every answer has its job's rows, and reads the engine's CPU (all its threads) from /proc.
The driver costs far less per job than the engine, so on two cores the engine is what is
measured. Prints a table; writes JSON and a PNG.

    python -m loadtests.engine_ceiling --model mnist --job-sizes 1,4,8,16 --windows 1,16
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from deepserve.server.settings import ServerSettings
from deepserve.server.split import wire
from deepserve.server.split.pump import unbundle
from deepserve.server.split.supervisor import engine_process_main

from .bench import make_images
from .figures import Panel, int_list, write_report
from .models import bench_repository, read_config
from .split_bench import cpu_seconds

READY_TIMEOUT_S = 300.0
ANSWER_TIMEOUT_S = 60.0


class EngineDriver:
    """A front end's DEALER line to the engine, driven synchronously (no event loop to pay)."""

    def __init__(self, address: str, process: multiprocessing.process.BaseProcess) -> None:
        self._context = zmq.Context()
        self.socket = self._context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(address)
        self._process = process

    def wait_ready(self, model: str) -> None:
        """Says hello, then reads the engine's table pushes until `model` is READY."""
        self.socket.send(wire.pack(["hello", 0, []]))
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if not self._process.is_alive():
                raise RuntimeError(f"the engine exited (code {self._process.exitcode})")
            if not self.socket.poll(200):
                continue
            for message in unbundle(self.socket.recv_multipart(copy=False)):
                _, status, body = wire.unpack(message[0].buffer)
                if status == "table" and any(
                    e[0] == model and e[1] == "READY" for e in body["entries"]
                ):
                    return
        raise TimeoutError(f"model '{model}' was not ready in {READY_TIMEOUT_S:.0f} s")

    def answered(self, rows: int) -> int:
        """Waits for what one receive brings; the count of jobs it answers. Each must be an
        answer with `rows` rows in every output."""
        waited = 0.0
        while not self.socket.poll(200):
            waited += 0.2
            if not self._process.is_alive() or waited > ANSWER_TIMEOUT_S:
                raise RuntimeError(
                    f"no answer from the engine in {waited:.1f} s "
                    f"(engine {'running' if self._process.is_alive() else 'exited'})"
                )
        count = 0
        for message in unbundle(self.socket.recv_multipart(copy=False)):
            _, status, body = wire.unpack(message[0].buffer)
            if status == "table":
                continue
            if status != "ok":
                raise RuntimeError(f"the engine answered {status}: {body}")
            for name, _, shape, _ in body[5]:
                if shape[0] != rows:
                    raise RuntimeError(f"output '{name}' has {shape[0]} rows, the job {rows}")
            count += 1
        return count

    def close(self) -> None:
        self.socket.close()
        self._context.term()


def run_point(
    driver: EngineDriver,
    job: list[Any],
    rows: int,
    window: int,
    seconds: float,
) -> tuple[int, float]:
    """Keeps `window` copies of `job` at the engine for `seconds`; (jobs answered, elapsed)."""
    sent = done = 0
    start = time.monotonic()
    stop = start + seconds
    while time.monotonic() < stop:
        while sent - done < window:
            sent += 1
            driver.socket.send_multipart(job, copy=False)
        done += driver.answered(rows)
    while done < sent:  # the last ones count: they were sent inside the window
        done += driver.answered(rows)
    return done, time.monotonic() - start


def submit_message(
    model: str, outputs: list[str], name: str, batch: np.ndarray, requests: int
) -> list[Any]:
    """A front end's job: `requests` requests of one image each, as one submit."""
    descriptors, frames = wire.describe({name: batch})
    header = [
        "submit", 1, [], model, 1, False, len(batch), outputs, 0, 0, None, descriptors, requests,
        None,  # no sequence
    ]  # fmt: skip
    return [wire.pack(header), *frames]


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = read_config(args.model_repository / args.model)
    input_name, images, _ = make_images(config, max(args.job_sizes))
    outputs = [tensor.name for tensor in config.output]
    rows: list[dict[str, Any]] = []
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        names = bench_repository(
            args.model_repository, args.model, scratch / "models", max(args.job_sizes), 1, 0
        )
        for mode in args.modes:
            settings = ServerSettings(
                model_repository=scratch / "models",
                models=(names[mode],),
                device=args.device,
                log_level="WARNING",
                metrics_port=0,
            )
            address = f"ipc://{scratch}/engine-{mode}"
            engine = context.Process(target=engine_process_main, args=(settings, address))
            engine.start()
            driver = EngineDriver(address, engine)
            try:
                driver.wait_ready(names[mode])
                for size in args.job_sizes:
                    job = submit_message(names[mode], outputs, input_name, images[:size], size)
                    for window in args.windows:
                        run_point(driver, job, size, window, args.warmup)
                        cpu = cpu_seconds(engine.pid)
                        jobs, elapsed = run_point(driver, job, size, window, args.duration)
                        cpu = cpu_seconds(engine.pid) - cpu
                        row = _row(mode, size, window, jobs, elapsed, cpu)
                        rows.append(row)
                        print(_line(row), flush=True)
            finally:
                driver.close()
                engine.terminate()
                engine.join(30)
    return {
        "model": args.model,
        "device": args.device,
        "host": f"{platform.node()} ({os.cpu_count()} cores)",
        "duration_s": args.duration,
        "rows": rows,
    }


def _row(mode: str, size: int, window: int, jobs: int, elapsed: float, cpu: float) -> dict:
    return {
        "mode": mode,
        "requests_per_job": size,
        "window": window,
        "jobs_per_s": jobs / elapsed,
        "requests_per_s": jobs * size / elapsed,
        "engine_cpu_us_per_job": 1e6 * cpu / jobs,
        "engine_cpu_us_per_request": 1e6 * cpu / (jobs * size),
        "engine_cores_busy": cpu / elapsed,
    }


def _line(row: dict[str, Any]) -> str:
    return (
        f"  {row['mode']:<9} {row['requests_per_job']:>3} requests/job  window {row['window']:<3}"
        f"{row['jobs_per_s']:9.0f} jobs/s {row['requests_per_s']:9.0f} requests/s  engine CPU "
        f"{row['engine_cpu_us_per_job']:6.1f} us/job {row['engine_cpu_us_per_request']:6.1f} "
        f"us/request  {row['engine_cores_busy']:.2f} cores"
    )


def write_outputs(report: dict[str, Any], out: Path) -> list[Path]:
    return write_report(
        report,
        out / f"engine-ceiling-{report['model']}-{report['device']}",
        x="requests_per_job",
        xlabel="requests per job",
        group=lambda row: (row["mode"], row["window"]),
        label=lambda key: f"{key[0]}, {key[1]} job(s) outstanding",
        panels=[
            Panel("requests_per_s", "What the engine takes", "requests/s"),
            Panel("engine_cpu_us_per_request", "Engine CPU per request", "us per request"),
        ],
        title=f"One engine, {report['model']} on {report['device']}, {report['host']}",
        log_scale=True,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model name in --model-repository")
    parser.add_argument("--model-repository", type=Path, default=Path("models"))
    parser.add_argument("--modes", type=lambda s: s.split(","), default=["noop"])
    parser.add_argument("--job-sizes", type=int_list, default=[1, 4, 8, 16])
    parser.add_argument("--windows", type=int_list, default=[1, 16], help="jobs outstanding")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per point")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--out", type=Path, default=Path("results"), help="folder for JSON + PNG")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    report = run(args)
    for path in write_outputs(report, args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
