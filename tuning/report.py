"""What a tuning run leaves: the winner's model folder (config.pbtxt, and its graph where the
repository is at hand), a JSON report, a Markdown table of every point and a plot of
throughput against p99 with the default and the winner marked."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from .search import Budget, Result, feasible


def top(result: Result) -> dict[str, float]:
    rows = result.get("rows") or {}
    return rows[max(rows, key=int)] if rows else {}


def _as_model(config: mc.ModelConfig, model: str, precision: str) -> mc.ModelConfig:
    """The winning config under the model's own name, its precision said where not FP32."""
    winner = mc.ModelConfig()
    winner.CopyFrom(config)
    winner.name = model
    if precision != "fp32":
        winner.parameters["precision"].string_value = precision.upper()
    return winner


def write_winner(
    out: Path, model: str, config: mc.ModelConfig, graph: Path | None, precision: str
) -> Path:
    """<out>/<model>: the winning config under the model's own name, and the graph it runs
    (a lower-precision variant's graph becomes the model's), so clients call it unchanged."""
    folder = out / model
    folder.mkdir(parents=True, exist_ok=True)
    winner = _as_model(config, model, precision)
    (folder / "config.pbtxt").write_text(text_format.MessageToString(winner))
    if graph is not None:
        (folder / "1").mkdir(exist_ok=True)
        shutil.copyfile(graph, folder / "1" / "model.onnx")
        for extra in graph.parent.parent.iterdir():
            if extra.is_file() and (extra.suffix == ".txt" or extra.name == "NOTICE"):
                shutil.copyfile(extra, folder / extra.name)
    return folder


def apply_winner(
    model_dir: Path, config: mc.ModelConfig, graph: Path | None, precision: str
) -> list[str]:
    """Into the repository: the config replaced (the old one kept beside it) and, for another
    precision, its graph as a new version, which the default version policy serves."""
    done = []
    before = model_dir / "config.pbtxt.before-tune"
    if not before.exists():
        shutil.copyfile(model_dir / "config.pbtxt", before)
        done.append(f"kept the previous config as {before.name}")
    winner = _as_model(config, model_dir.name, precision if graph is not None else "fp32")
    if precision != "fp32" and graph is not None:
        versions = [int(p.name) for p in model_dir.iterdir() if p.name.isdigit()]
        version = model_dir / str(max(versions, default=0) + 1)
        version.mkdir()
        shutil.copyfile(graph, version / "model.onnx")
        done.append(f"the {precision.upper()} graph is version {version.name}")
    (model_dir / "config.pbtxt").write_text(text_format.MessageToString(winner))
    done.append(f"wrote {model_dir.name}/config.pbtxt")
    return done


def _cell(result: Result, conc: str) -> str:
    row = (result.get("rows") or {}).get(conc)
    return f"{row['throughput']:.0f} / {row['p99_ms']:.1f}" if row else "-"


def markdown(report: dict[str, Any]) -> str:
    concs = [str(c) for c in report["concurrency"]]
    budget = report["budget_p99_ms"]
    lines = [
        f"# deepserve tune: {report['model']}",
        "",
        f"{report['mode']} search, {len(report['points'])} points in {report['seconds']:.0f} s "
        f"on {report['host']}; load {report['load_seconds']} s per concurrency; p99 budget "
        + ", ".join(f"c={c}: {budget[c]:.1f} ms" for c in concs)
        + f" ({report['budget_from']}).",
        "",
        f"**Winner**: {report['winner']['label']}"
        + (
            " (the current configuration: the search's best did not beat it side by side)."
            if report["winner"].get("current_kept")
            else "."
        ),
        "",
        "Side by side in one run (images a second / p99 ms):",
        "",
        "| configuration | " + " | ".join(f"c={c}" for c in concs) + " |",
        "|---|" + "---|" * len(concs),
    ]
    header = " | ".join(f"c={c}" for c in concs)
    for name in ("default", "winner"):
        confirmed = report["confirm"][name]
        cells = " | ".join(_cell(confirmed, c) for c in concs)
        shown = (
            "search's best" if name == "winner" and report["winner"].get("current_kept") else name
        )
        lines.append(f"| {shown}: {confirmed['label']} | {cells} |")
    ratio, by = report["confirm"]["throughput_ratio"], report["confirm"]["ratio_by_concurrency"]
    each = ", ".join(f"c={c}: {r:.2f}x" for c, r in by.items())
    lines += ["", f"Throughput: {ratio:.2f}x the default's (geometric mean; {each}).", ""]
    lines += ["Every point:", "", f"| # | configuration | {header} | answers | budget |"]
    lines.append("|---|---|" + "---|" * len(concs) + "---|---|")
    for index, result in enumerate(report["points"], 1):
        agreement = f"{result['agreement']:.0%}" if "agreement" in result else "-"
        verdict = "within" if feasible(result, budget) else "over"
        verdict = "refused" if "error" in result else verdict
        cells = " | ".join(_cell(result, c) for c in concs)
        lines.append(f"| {index} | {result['label']} | {cells} | {agreement} | {verdict} |")
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> bool:
    """Throughput against p99 at the highest concurrency, one dot a point; False without
    matplotlib (the loadtest extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    budget = report["budget_p99_ms"]
    conc = str(report["concurrency"][-1])
    figure, axes = plt.subplots(figsize=(8, 5.5))
    for result in report["points"]:
        row = top(result)
        if row:
            color = "tab:blue" if feasible(result, budget) else "tab:gray"
            axes.scatter(row["p99_ms"], row["throughput"], color=color, s=22, alpha=0.8)
    for name, marker, color in (("default", "s", "tab:red"), ("winner", "*", "tab:green")):
        row = top(report["confirm"][name])
        if row:
            label = f"{name}: {row['throughput']:.0f}/s, p99 {row['p99_ms']:.1f} ms"
            axes.scatter(row["p99_ms"], row["throughput"], marker=marker, s=220, color=color,
                         edgecolor="black", label=label, zorder=3)  # fmt: skip
    axes.axvline(budget[conc], color="tab:red", linestyle="--", linewidth=1, label="p99 budget")
    axes.scatter([], [], color="tab:blue", s=22, label="within budget everywhere")
    axes.scatter([], [], color="tab:gray", s=22, label="over budget somewhere, or refused")
    axes.set_xlabel(f"p99 latency at concurrency {conc} (ms)")
    axes.set_ylabel(f"throughput at concurrency {conc} (images/s)")
    axes.set_title(f"deepserve tune {report['model']}: {len(report['points'])} configurations")
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def write_report(report: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    stem = f"tune-{report['model']}"
    written = [out / f"{stem}.json", out / f"{stem}.md"]
    written[0].write_text(json.dumps(report, indent=2) + "\n")
    written[1].write_text(markdown(report))
    if plot(report, out / f"{stem}.png"):
        written.append(out / f"{stem}.png")
    return written


def summary_budget(budget: Budget) -> str:
    return ", ".join(f"c={c} {ms:.1f} ms" for c, ms in budget.items())
