"""The Grafana dashboard's panels, drawn with matplotlib from a real Prometheus, so a reader
sees what the dashboard shows without Grafana.

    python -m loadtests.dashboard --prometheus http://localhost:9090 --minutes 15 --out dash.png
    python -m loadtests.dashboard --demo --out docs/images/dashboard.png

--demo runs the whole thing here: a deepserve on the bundled models, a Prometheus (Debian's
package) scraping it every second, the Locust load test with a ramp of users and a trickle of
callers' mistakes, then the drawing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "docker" / "monitoring" / "grafana" / "dashboards" / "deepserve.json"
UNIT_SCALE = {"s": (1000, "ms"), "percentunit": (100, "%"), "reqps": (1, "per second")}


def panels() -> list[dict]:
    return json.loads(DASHBOARD.read_text())["panels"]


def query_range(prometheus: str, expr: str, start: float, end: float, step: float) -> list[dict]:
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{prometheus}/api/v1/query_range?{params}", timeout=30) as r:
        answer = json.loads(r.read())
    if answer["status"] != "success":
        raise RuntimeError(f"{expr}: {answer}")
    return answer["data"]["result"]


def _legend(template: str, metric: dict[str, str]) -> str:
    """Grafana's legend format: {{label}} by its value, "" when the series lacks it."""
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), template).strip()


def draw(prometheus: str, start: float, end: float, out: Path, rate_interval: str = "15s") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = panels()
    columns = 2
    rows = (len(shown) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(14, 3.4 * rows), sharex=True)
    step = max((end - start) / 300, 1.0)
    for axis, panel in zip(axes.flat, shown, strict=False):
        scale, unit = UNIT_SCALE.get(panel["fieldConfig"]["defaults"]["unit"], (1, ""))
        drawn = 0
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", rate_interval).replace("$model", ".*")
            for series in query_range(prometheus, expr, start, end, step):
                points = [(float(t) - start, float(v)) for t, v in series["values"]]
                points = [(t, v * scale) for t, v in points if v == v]  # drop NaN
                if points:
                    axis.plot(
                        *zip(*points, strict=True),
                        label=_legend(target["legendFormat"], series["metric"]),
                    )
                    drawn += 1
        axis.set_title(panel["title"], fontsize=11, loc="left")
        axis.set_ylim(bottom=0)
        if panel["title"] == "Readiness":
            axis.set_ylim(0, 1.15)
        axis.set_ylabel(unit)
        axis.grid(alpha=0.3)
        if drawn:
            axis.legend(fontsize=7, loc="upper left", ncol=2)
        else:
            note = "no data (no GPU on this host)" if "GPU" in panel["title"] else "no data"
            axis.text(0.5, 0.5, note, ha="center", va="center", transform=axis.transAxes)
    for axis in axes.flat[len(shown) :]:
        axis.set_visible(False)
    for axis in axes[-1]:
        axis.set_xlabel("seconds")
    fig.suptitle("deepserve dashboard (docker/monitoring), drawn from Prometheus", fontsize=13)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


@contextlib.contextmanager
def _prometheus(metrics_port: int, folder: Path) -> Iterator[str]:
    from .local_server import free_port

    binary = shutil.which("prometheus")
    if binary is None:
        raise SystemExit("needs Prometheus: apt-get install prometheus")
    (folder / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 5s}\n"
        "scrape_configs:\n  - job_name: deepserve\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]\n"
    )
    port = free_port()
    process = subprocess.Popen(
        [binary, f"--config.file={folder / 'prometheus.yml'}",
         f"--storage.tsdb.path={folder / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def _mistakes(url: str, stop: threading.Event) -> None:
    """Callers' mistakes now and then, so the failures panel has something to show."""
    from deepserve import Client, DeepserveError

    with Client(url, retries=0) as client:
        while not stop.wait(0.5):
            for call in (
                lambda: client.classify(b"not an image", model="mnist"),
                lambda: client.classify(b"\x89PNG", model="no-such-model"),
            ):
                with contextlib.suppress(DeepserveError):
                    call()


def demo(out: Path, seconds: int) -> Path:
    from .local_server import free_port, local_server

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        metrics_port = free_port()
        flags = ("--metrics-port", str(metrics_port))
        with (
            local_server(ROOT / "models", folder / "server.log", *flags) as url,
            _prometheus(metrics_port, folder) as prometheus,
        ):
            stop = threading.Event()
            mistakes = threading.Thread(target=_mistakes, args=(url, stop), daemon=True)
            start = time.time()
            mistakes.start()
            subprocess.run(
                [sys.executable, "-m", "loadtests.run", "--url", url, "--users", "24",
                 "--spawn-rate", str(24 / (seconds * 0.6)), "--duration", f"{seconds}s",
                 "--out", str(folder / "load"), "--metrics-url", f"127.0.0.1:{metrics_port}"],
                cwd=ROOT, check=True,
            )  # fmt: skip
            stop.set()
            time.sleep(3)  # the last scrapes
            return draw(prometheus, start, time.time(), out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", default="http://localhost:9090")
    parser.add_argument("--minutes", type=float, default=15, help="the period to draw")
    parser.add_argument("--demo", action="store_true", help="run server, Prometheus and load here")
    parser.add_argument("--seconds", type=int, default=90, help="--demo: load-test length")
    parser.add_argument("--out", type=Path, default=Path("results") / "dashboard.png")
    args = parser.parse_args(argv)
    if args.demo:
        path = demo(args.out, args.seconds)
    else:
        end = time.time()
        path = draw(args.prometheus, end - args.minutes * 60, end, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
