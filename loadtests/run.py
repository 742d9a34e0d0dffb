"""Run the Locust load test headless and write its CSV, HTML report, plots and summary.

    python -m loadtests.run --users 16 --spawn-rate 4 --duration 60s --out results/load
    python -m loadtests.run --url host:8001 ...          # against a running server
    python -m loadtests.run --p99-ms 100 ...             # then apply the SLO gate

Without --url it starts a server on the bundled models (on a free port) and stops it after.
Extra arguments after -- go to Locust (e.g. -- --detect-model "" to skip detection).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
from pathlib import Path

from . import server_view
from .local_server import free_port, local_server
from .locust_report import write_report
from .slo import check, read_stats

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--url", default=None, help="a running server (default: start one)")
    parser.add_argument(
        "--metrics-url",
        default=None,
        help="that server's Prometheus endpoint (host:port), for the server-side view in the "
        "summary (default: the started server's; none with --url)",
    )
    parser.add_argument("--model-repository", type=Path, default=ROOT / "models")
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--spawn-rate", type=float, default=4)
    parser.add_argument("--duration", default="60s", help="Locust --run-time")
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "results" / "load",
        help="prefix of the CSV / HTML / PNG / markdown files",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="Locust worker processes on this machine (-1: one per core)",
    )
    parser.add_argument("--p99-ms", type=float, default=None, help="SLO gate: p99 limit")
    parser.add_argument("--max-failure-ratio", type=float, default=0.0, help="SLO gate")
    args, locust_args = parser.parse_known_args(argv)
    if locust_args[:1] == ["--"]:
        locust_args = locust_args[1:]

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        metrics_url = args.metrics_url
        if args.url:
            url = args.url
        else:
            metrics_port = free_port()
            metrics_url = metrics_url or f"127.0.0.1:{metrics_port}"
            url = stack.enter_context(
                local_server(
                    args.model_repository,
                    Path(f"{args.out}_server.log"),
                    "--metrics-port",
                    str(metrics_port),
                )
            )
        before = server_view.scrape(metrics_url) if metrics_url else {}
        command = [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(ROOT / "loadtests" / "locustfile.py"),
            "--host",
            url,
            "--headless",
            "--users",
            str(args.users),
            "--spawn-rate",
            str(args.spawn_rate),
            "--run-time",
            args.duration,
            "--csv",
            str(args.out),
            "--csv-full-history",
            "--html",
            f"{args.out}.html",
            "--only-summary",
            "--exit-code-on-error",
            "0",
        ]
        if args.processes != 1:
            command += ["--processes", str(args.processes)]
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        subprocess.run([*command, *locust_args], check=True, cwd=ROOT, env=env)
        view = server_view.markdown(before, server_view.scrape(metrics_url)) if metrics_url else []
        report = write_report(args.out, url, view)
        print(f"wrote {args.out}.html, {args.out}_stats.csv, {report}")
    if args.p99_ms is not None:
        broken = check(
            read_stats(Path(f"{args.out}_stats.csv")),
            args.p99_ms,
            args.max_failure_ratio,
            per_request=False,
        )
        for line in broken:
            print(f"SLO BROKEN: {line}")
        return 1 if broken else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
