"""The search: a quick coordinate search (each knob in turn, the others held at the best so far)
or the full grid; every measured point is appended to a progress file, so a stopped run
resumes where it was. The objective: the most throughput over the concurrencies asked (their
geometric mean), with p99 within the budget at every one, no errors and the answers checked."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .space import Point, grid

Result = dict[str, Any]
Budget = dict[str, float]
"""p99 budget in ms by concurrency (as a string, the key of a result's rows)."""


def feasible(result: Result, budget: Budget) -> bool:
    rows = result.get("rows")
    if not rows or not result.get("answers_ok"):
        return False
    return all(
        row["errors"] == 0 and row["p99_ms"] <= budget.get(conc, math.inf)
        for conc, row in rows.items()
    )


def score(result: Result) -> float:
    """Throughput over the concurrencies measured, their geometric mean: each level counts
    alike, and one noisy level moves it less than it moves a single figure (0: failed)."""
    rows = result.get("rows") or {}
    values = [row["throughput"] for row in rows.values()]
    if not values or min(values) <= 0:
        return 0.0
    return math.exp(sum(math.log(v) for v in values) / len(values))


MARGIN = 1.02
"""A point must beat the best by 2 % to replace it: less is the load's noise."""


def better(result: Result, than: Result, budget: Budget) -> bool:
    """Within budget beats over it; then more throughput, by more than the noise."""
    if feasible(result, budget) != feasible(than, budget):
        return feasible(result, budget)
    return score(result) > MARGIN * score(than)


class Progress:
    """Measured points by key, read back from and appended to a JSON-lines file."""

    def __init__(self, path: Path, resume: bool) -> None:
        self.path = path
        self.results: dict[str, Result] = {}
        if resume and path.is_file():
            for line in path.read_text().splitlines():
                if line.strip():
                    result = json.loads(line)
                    self.results[result["point"]] = result
        elif path.exists():
            path.unlink()

    def record(self, result: Result) -> None:
        self.results[result["point"]] = result
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as out:
            out.write(json.dumps(result) + "\n")


def describe(result: Result) -> str:
    if "error" in result:
        return f"refused: {result['error'][:160]}"
    rows = " | ".join(
        f"c={c} {r['throughput']:.0f}/s p99 {r['p99_ms']:.1f} ms"
        + (f" {r['errors']} errors" if r["errors"] else "")
        for c, r in result["rows"].items()
    )
    return f"{rows} | answers {result['agreement']:.0%}"


class Search:
    def __init__(
        self,
        measure: Callable[[Point], Result],
        progress: Progress,
        budget: Budget,
        say: Callable[[str], None] = print,
    ) -> None:
        self._measure = measure
        self.progress = progress
        self.budget = budget
        self.say = say
        self.count = 0

    def result(self, point: Point) -> Result:
        self.count += 1
        key = point.key()
        cached = key in self.progress.results
        if not cached:
            self.progress.record(self._measure(point))
        result = self.progress.results[key]
        mark = "within budget" if feasible(result, self.budget) else "over budget"
        resumed = " (resumed)" if cached else ""
        self.say(f"[{self.count}] {point.label()}: {describe(result)}: {mark}{resumed}")
        return result

    def against(self, point: Point, best: Result) -> Result:
        """The point's result; measured once more when it would beat `best` on throughput but
        missed the budget, as one stalled request can put a short load's p99 over it."""
        result = self.result(point)
        near_win = (
            "rows" in result
            and result.get("answers_ok")
            and not feasible(result, self.budget)
            and score(result) > MARGIN * score(best)
            and not result.get("measured_again")
        )
        if near_win:
            again = {**self._measure(point), "measured_again": True}
            self.progress.record(again)
            mark = "within budget" if feasible(again, self.budget) else "over budget"
            self.say(f"    measured again, as it missed the budget: {describe(again)}: {mark}")
            return again
        return result

    def quick(self, start: Point, dims: dict[str, list]) -> tuple[Point, Result]:
        """Each knob in turn over its values, keeping whatever beats the best so far."""
        best, best_result = start, self.result(start)
        for name, values in dims.items():
            for value in values:
                if value == getattr(best, name):
                    continue
                candidate = dataclasses.replace(best, **{name: value})
                result = self.against(candidate, best_result)
                if better(result, best_result, self.budget):
                    best, best_result = candidate, result
        return best, best_result

    def full(self, start: Point, dims: dict[str, list]) -> tuple[Point, Result]:
        """Every combination of every knob's values."""
        return self._best([start, *(p for p in grid(dims, start) if p != start)])

    def _best(self, points: Iterable[Point]) -> tuple[Point, Result]:
        best: tuple[Point, Result] | None = None
        for point in points:
            result = self.result(point) if best is None else self.against(point, best[1])
            if best is None or better(result, best[1], self.budget):
                best = (point, result)
        assert best is not None
        return best
