"""What the sweep benchmarks share: their report as JSON beside a two-panel plot of its rows
(one line per group of rows), and their comma-separated number options."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Row = dict[str, Any]


@dataclass(frozen=True)
class Panel:
    y: str
    """The row field plotted."""
    title: str
    ylabel: str


def int_list(text: str) -> list[int]:
    """'1,8,32' -> [1, 8, 32] (an argparse type)."""
    return [int(part) for part in text.split(",") if part]


def write_json(report: dict[str, Any], path: Path) -> None:
    """A tool's figures as JSON (its folder made), and where they went."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


def write_report(
    report: dict[str, Any],
    stem: Path,
    *,
    x: str,
    xlabel: str,
    group: Callable[[Row], tuple],
    label: Callable[[tuple], str],
    panels: Sequence[Panel],
    title: str,
    log_scale: bool = False,
) -> list[Path]:
    """`stem`.json and `stem`.png: each panel plots one field of the rows against `x`, one
    line per `group` of rows. Log scales (base 2 on x) for sweeps over powers of two."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2))
    rows = report["rows"]
    figure, axes_list = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4))
    ticks = sorted({row[x] for row in rows})
    for axes, panel in zip(axes_list, panels, strict=True):
        for key in sorted({group(row) for row in rows}):
            points = [row for row in rows if group(row) == key]
            axes.plot(
                [row[x] for row in points],
                [row[panel.y] for row in points],
                marker="o",
                label=label(key),
            )
        axes.set(xlabel=xlabel, ylabel=panel.ylabel, title=panel.title)
        if log_scale:
            axes.set_xscale("log", base=2)
            axes.set_yscale("log")
        else:
            axes.set_ylim(bottom=0)
        axes.set_xticks(ticks, [str(tick) for tick in ticks])
        axes.grid(alpha=0.3, which="both")
        axes.legend(fontsize="small")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(stem.with_suffix(".png"), dpi=110)
    plt.close(figure)
    return [stem.with_suffix(".json"), stem.with_suffix(".png")]
