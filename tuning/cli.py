"""`deepserve tune --model NAME`: find the configuration of one model with the most throughput
whose p99 stays within a budget, by measuring each candidate on a real server.

    deepserve tune --model ssd --concurrency 1,16,64 --p99-ms 150 --out tuned
    deepserve tune --model mnist --url 10.0.0.5:8001 --out tuned    # a running server

Against the repository (the default) a server is started on a scratch copy in explicit model
control mode; with --url, the running server must be in that mode (and, with tokens, the
admin token in DEEPSERVE_ADMIN_TOKEN). Each candidate is loaded as a config override, its
answers are checked against the current configuration's, then a closed-loop load measures it.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

QUICK_SECONDS = 4.0
FULL_SECONDS = 8.0
CONFIRM_ROUNDS = 3
"""The side-by-side check loads the current config and the winner in turn, this many times
each, and averages: a drift of the machine's speed falls on both alike."""
DEFAULT_SLACK = 1.1
"""Without --p99-ms, the budget is the current configuration's p99 (+10 % for noise): the
winner keeps today's latency at every concurrency."""
IMPOSSIBLE = 0.25
"""A budget under a quarter of one lone request's time cannot be met by any configuration."""


class TuneError(Exception):
    """A bad option or an impossible task: the message is for the user."""


def add_tune_command(commands: argparse._SubParsersAction) -> None:
    tune = commands.add_parser(
        "tune",
        help="find the fastest configuration of a model within a p99 budget, by measurement",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tune.add_argument("--model", required=True, help="the model to tune")
    tune.add_argument("--model-repository", type=Path, default=Path("models"))
    tune.add_argument("--url", help="tune the model of a running server (host:port) instead")
    tune.add_argument("--concurrency", default="1,16,64", help="comma-separated (default 1,16,64)")
    tune.add_argument("--p99-ms", type=float, help="p99 budget (default: the current config's)")
    tune.add_argument("--mode", choices=("quick", "full"), default="quick")
    tune.add_argument("--seconds", type=float, help="load per concurrency and point")
    tune.add_argument(
        "--precisions",
        help="comma-separated from fp32,int8 (CPU) or fp32,fp16,tensorrt,tensorrt_fp16 (GPU); "
        "default: all the machine can use",
    )
    tune.add_argument(
        "--knobs",
        help="comma-separated knobs to search (default: all): precision, max_batch_size, "
        "instances, threads, queue_delay_us, preferred, graph_level",
    )
    tune.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    tune.add_argument(
        "--data", type=Path, default=Path("../shared/data/mnist"),
        help="MNIST folder to calibrate an INT8 variant the repository lacks",
    )  # fmt: skip
    tune.add_argument("--out", type=Path, default=Path("tuned"), help="winner and report")
    tune.add_argument("--apply", action="store_true", help="write the winner into the repository")
    tune.add_argument("--resume", action="store_true", help="reuse points measured before")
    tune.set_defaults(run=run_tune)


def _concurrency(text: str) -> list[int]:
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise TuneError(f"--concurrency takes whole numbers like 1,16,64, got '{text}'") from None
    if not values or values[0] < 1 or values[-1] > 1024:
        raise TuneError(f"--concurrency values must be in 1..1024, got '{text}'")
    return values


def _gpu(device: str, url: str | None) -> bool:
    if device != "auto":
        return device == "cuda"
    if url:
        return False  # a remote server's device is not known here: say --device cuda
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def _precisions(asked: str | None, gpu: bool) -> list[str]:
    from .space import CPU_PRECISIONS, GPU_PRECISIONS

    allowed = GPU_PRECISIONS if gpu else CPU_PRECISIONS
    if asked is None:
        return list(allowed)
    wanted = [p.strip() for p in asked.split(",") if p.strip()]
    for precision in wanted:
        if precision not in (*CPU_PRECISIONS, *GPU_PRECISIONS):
            raise TuneError(f"unknown precision '{precision}': use {', '.join(allowed)}")
        if precision not in allowed:
            raise TuneError(
                f"precision '{precision}' needs a GPU (CUDA execution provider), and this "
                "machine has none: on a CPU use fp32 and int8"
                if not gpu
                else f"precision '{precision}' is for CPUs; on a GPU use {', '.join(allowed)}"
            )
    return wanted if "fp32" in wanted else ["fp32", *wanted]


def _read(folder: Path) -> mc.ModelConfig:
    return text_format.Parse((folder / "config.pbtxt").read_text(), mc.ModelConfig())


def _local_configs(
    args: argparse.Namespace, precisions: list[str], scratch: Path, say
) -> tuple[dict[str, mc.ModelConfig], dict[str, Path]]:
    """Each precision's config and folder: the repository's variants, or an INT8 variant made
    here when the repository has none."""
    from .space import SUFFIXES

    source = args.model_repository / args.model
    configs, folders = {}, {}
    for precision in precisions:
        folder = args.model_repository / f"{args.model}{SUFFIXES[precision]}"
        if not (folder / "config.pbtxt").is_file() and precision == "int8":
            made = _make_int8(source, scratch, args.data, say)
            if made is None:
                continue
            folder = made
        if not (folder / "config.pbtxt").is_file():
            say(f"{precision}: no {folder.name} in the repository; not tried")
            continue
        configs[precision], folders[precision] = _read(folder), folder
    return configs, folders


def _make_int8(source: Path, scratch: Path, data: Path, say) -> Path | None:
    if not data.is_dir():
        say(f"int8: no variant in the repository and no MNIST data at {data} to make one")
        return None
    from deepserve.training.quantize import MAX_DROP_POINTS, write_int8_variant

    say("int8: making the variant (deepserve-train quantize) ...")
    report = write_int8_variant(source, scratch, data, None, MAX_DROP_POINTS)
    if not report["within_max_drop"]:
        say(f"int8: the variant loses {report['drop_points']:.2f} points; not tried")
        return None
    return scratch / report["model"]


@contextmanager
def _local_server(args, folders: dict[str, Path], scratch: Path, gpu: bool) -> Iterator[str]:
    from ..loadtests.local_server import run_server

    repository = scratch / "models"
    repository.mkdir()
    for folder in folders.values():
        (repository / folder.name).symlink_to(folder.resolve(), target_is_directory=True)
    flags = ["--model-control-mode", "explicit", "--model", args.model, "--log-level", "WARNING"]
    flags += ["--device", "cuda" if gpu else "cpu"]
    with run_server(repository, scratch, *flags, timeout=180) as server:
        yield server.url


def _remote_configs(args, precisions: list[str], token: str, say) -> dict[str, mc.ModelConfig]:
    import tritonclient.grpc as triton
    from tritonclient.utils import InferenceServerException

    from .space import SUFFIXES

    headers = {"authorization": f"Bearer {token}"} if token else None
    configs = {}
    with triton.InferenceServerClient(args.url) as client:
        for precision in precisions:
            name = f"{args.model}{SUFFIXES[precision]}"
            try:
                configs[precision] = client.get_model_config(name, headers=headers).config
            except InferenceServerException as exc:
                if precision == "fp32":
                    raise TuneError(f"the server at {args.url}: {exc.message()}") from None
                say(f"{precision}: the server has no {name}; not tried")
    return configs


def run_tune(args: argparse.Namespace, say=print) -> int:
    try:
        return _tune(args, say)
    except TuneError as exc:
        print(f"deepserve tune: {exc}", file=sys.stderr)
        return 2


def _tune(args: argparse.Namespace, say) -> int:
    from . import report as reports
    from .measure import Bench
    from .search import MARGIN, Progress, Search, feasible, score
    from .space import default_point, dimensions, point_config

    concurrency = _concurrency(args.concurrency)
    if args.p99_ms is not None and args.p99_ms <= 0:
        raise TuneError(f"--p99-ms must be above 0, got {args.p99_ms}")
    if args.url and args.apply:
        raise TuneError("--apply writes into a repository: with --url, use --out")
    if not args.url and not (args.model_repository / args.model / "config.pbtxt").is_file():
        known = sorted(p.parent.name for p in args.model_repository.glob("*/config.pbtxt"))
        raise TuneError(
            f"no model '{args.model}' in {args.model_repository} (it has: {', '.join(known)})"
        )
    _only({}, args.knobs)  # a bad knob is told before anything starts
    gpu = _gpu(args.device, args.url)
    precisions = _precisions(args.precisions, gpu)
    seconds = args.seconds or (QUICK_SECONDS if args.mode == "quick" else FULL_SECONDS)
    token = os.environ.get("DEEPSERVE_ADMIN_TOKEN", "")
    started = time.perf_counter()
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="deepserve-tune-")))
        folders: dict[str, Path] = {}
        if args.url:
            url = args.url
            configs = _remote_configs(args, precisions, token, say)
        else:
            configs, folders = _local_configs(args, precisions, scratch, say)
            say(f"starting a server on {len(folders)} model folder(s) ...")
            url = stack.enter_context(_local_server(args, folders, scratch, gpu))
        warmup = min(1.0, seconds / 4)
        bench = Bench(url, args.model, configs, concurrency, seconds, warmup, token=token, gpu=gpu)
        stack.callback(bench.close)
        start = default_point(configs["fp32"])
        budget = {str(c): args.p99_ms for c in concurrency} if args.p99_ms else None
        progress = Progress(args.out / f"tune-{args.model}.progress.jsonl", args.resume)
        first = Search(bench.measure, progress, budget or {}, say).result(start)
        if "rows" not in first:
            raise TuneError(f"the current configuration does not serve: {first.get('error')}")
        budget_from = "--p99-ms"
        if budget is None:  # two loads of the current config: its own spread is allowed
            second = bench.measure(start).get("rows") or first["rows"]
            budget = {
                c: max(row["p99_ms"], second[c]["p99_ms"]) * DEFAULT_SLACK
                for c, row in first["rows"].items()
            }
            budget_from = "the current configuration's p99 (the higher of two loads) + 10 %"
        alone = first["rows"][str(concurrency[0])]["p50_ms"]
        if args.p99_ms is not None and args.p99_ms < IMPOSSIBLE * alone:
            raise TuneError(
                f"--p99-ms {args.p99_ms:g} is impossible here: one request takes "
                f"{alone:.2f} ms (p50 at concurrency {concurrency[0]}), and no configuration "
                "makes it four times faster"
            )
        dims = _only(dimensions(start, tuple(configs), gpu=gpu), args.knobs)
        search = Search(bench.measure, progress, budget, say)
        say(f"{args.mode} search over {', '.join(f'{k} {v}' for k, v in dims.items())}")
        run = search.quick if args.mode == "quick" else search.full
        winner, winner_result = run(start, dims)
        if winner == start:  # nothing beat it: no second look at the same configuration
            confirm: dict[str, Any] = {"default": first, "winner": first}
        else:
            say("confirming: the current configuration and the winner, side by side ...")
            confirm = _side_by_side(bench, start, winner)
        base = score(confirm["default"])
        confirm["throughput_ratio"] = score(confirm["winner"]) / base if base else 0.0
        confirm["ratio_by_concurrency"] = _ratios(confirm["default"], confirm["winner"])
        kept = winner != start and confirm["throughput_ratio"] < MARGIN
        if kept:  # measured side by side it does not beat today's: the search saw noise
            say(f"{winner.label()} is {confirm['throughput_ratio']:.2f}x the current "
                "configuration side by side: the current one stays")  # fmt: skip
            winner, winner_result = start, first
        points = list(progress.results.values())
        report = {
            "model": args.model,
            "mode": args.mode,
            "host": f"{os.cpu_count()} CPUs, {platform.machine()}" + (", GPU" if gpu else ""),
            "concurrency": concurrency,
            "load_seconds": seconds,
            "budget_p99_ms": budget,
            "budget_from": budget_from,
            "precisions": list(configs),
            "seconds": time.perf_counter() - started,
            "default": {"point": start.key(), "label": start.label()},
            "winner": {
                "point": winner.key(),
                "label": winner.label(),
                "feasible": feasible(winner_result, budget),
                "current_kept": kept,
            },
            "confirm": confirm,
            "points": points,
        }
        config = point_config(configs[winner.precision], winner, gpu)
        graph = _graph(folders.get(winner.precision))
        written = reports.write_report(report, args.out)
        folder = reports.write_winner(args.out, args.model, config, graph, winner.precision)
        ratio, by = confirm["throughput_ratio"], confirm["ratio_by_concurrency"]
        say(f"winner: {winner.label()} ({ratio:.2f}x the current throughput; {by})")
        say(f"its model folder: {folder}")
        say("report: " + ", ".join(str(p) for p in written))
        if args.apply:
            for line in reports.apply_winner(
                args.model_repository / args.model, config, graph, winner.precision
            ):
                say(f"applied: {line}")
        if not feasible(winner_result, budget):
            print(
                f"deepserve tune: no configuration kept p99 within "
                f"{reports.summary_budget(budget)}; the report lists what each reached",
                file=sys.stderr,
            )
            return 1
    return 0


def _side_by_side(bench: Any, start: Any, winner: Any) -> dict[str, Any]:
    runs: dict[str, list[dict]] = {"default": [], "winner": []}
    for _ in range(CONFIRM_ROUNDS):
        runs["default"].append(bench.measure(start))
        runs["winner"].append(bench.measure(winner))
    return {name: _mean_of(results) for name, results in runs.items()}


def _mean_of(results: list[dict]) -> dict:
    """One result whose figures are the means of the runs' (a failed run: that result)."""
    failed = next((r for r in results if "rows" not in r), None)
    if failed is not None:
        return failed
    rows = {
        conc: {
            key: float(sum(r["rows"][conc][key] for r in results) / len(results))
            for key in ("throughput", "p50_ms", "p99_ms")
        }
        | {"errors": sum(r["rows"][conc]["errors"] for r in results), "first_error": ""}
        for conc in results[0]["rows"]
    }
    agreement = min(r["agreement"] for r in results)
    return {**results[0], "rows": rows, "agreement": agreement, "runs": len(results),
            "answers_ok": all(r["answers_ok"] for r in results)}  # fmt: skip


def _only(dims: dict[str, list], knobs: str | None) -> dict[str, list]:
    if knobs is None:
        return dims
    wanted = [k.strip() for k in knobs.split(",") if k.strip()]
    from .space import KNOBS

    for knob in wanted:
        if knob not in KNOBS:
            raise TuneError(f"unknown knob '{knob}': use {', '.join(KNOBS)}")
    return {name: values for name, values in dims.items() if name in wanted}


def _ratios(default: dict, winner: dict) -> dict[str, float]:
    rows, theirs = default.get("rows") or {}, winner.get("rows") or {}
    return {
        c: round(theirs[c]["throughput"] / row["throughput"], 3)
        for c, row in rows.items()
        if c in theirs and row["throughput"] > 0
    }


def _graph(folder: Path | None) -> Path | None:
    if folder is None:
        return None
    versions = [
        int(p.name) for p in folder.iterdir() if p.name.isdigit() and (p / "model.onnx").is_file()
    ]
    return folder / str(max(versions)) / "model.onnx" if versions else None
