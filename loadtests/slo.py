"""SLO gate over a Locust run: exit 1 when p99 latency or the failure ratio is over its limit.

    python -m loadtests.slo results/load_stats.csv --p99-ms 200 --max-failure-ratio 0.001

Checks the Aggregated row, and each request name with --per-request. Prints every check.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path


def read_stats(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def check(
    rows: list[dict[str, str]], p99_ms: float, max_failure_ratio: float, per_request: bool
) -> list[str]:
    """The broken limits, one line each; empty when every limit holds."""
    broken = []
    chosen = [r for r in rows if per_request or r["Name"] == "Aggregated"]
    if not chosen:
        return ["no Aggregated row: is this a Locust *_stats.csv?"]
    for row in chosen:
        requests = int(row["Request Count"])
        failures = int(row["Failure Count"])
        ratio = failures / requests if requests else 1.0
        p99 = float(row["99%"]) if row["99%"] not in ("", "N/A") else float("inf")
        name = row["Name"]
        print(
            f"{name}: {requests} requests, failure ratio {ratio:.4f} (limit "
            f"{max_failure_ratio}), p99 {p99:.0f} ms (limit {p99_ms:.0f})"
        )
        if requests == 0:
            broken.append(f"{name}: no requests")
        if ratio > max_failure_ratio:
            broken.append(f"{name}: failure ratio {ratio:.4f} > {max_failure_ratio}")
        if p99 > p99_ms:
            broken.append(f"{name}: p99 {p99:.0f} ms > {p99_ms:.0f} ms")
    return broken


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stats_csv", type=Path, help="Locust's <prefix>_stats.csv")
    parser.add_argument("--p99-ms", type=float, required=True)
    parser.add_argument("--max-failure-ratio", type=float, default=0.0)
    parser.add_argument("--per-request", action="store_true", help="check every request name")
    args = parser.parse_args(argv)
    broken = check(
        read_stats(args.stats_csv), args.p99_ms, args.max_failure_ratio, args.per_request
    )
    for line in broken:
        print(f"SLO BROKEN: {line}")
    print("SLO met" if not broken else f"SLO broken ({len(broken)})")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
