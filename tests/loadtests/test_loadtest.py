"""The Locust load test, short and headless, against real servers: a right model gives zero
failures and every report file; a wrong model under the right name gives failures."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from ..onnx_models import CLASSIFIER_CONFIG, DIGIT_LABELS, linear_classifier, write_model
from ..server_process import RunningServer, run_server

ROOT = Path(__file__).resolve().parents[2]


def _run(
    url: str, out: Path, *extra: str, locust: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "loadtests.run",
        "--url",
        url,
        "--users",
        "8",  # one of each user class
        "--spawn-rate",
        "8",
        "--duration",
        "10s",
        "--out",
        str(out),
        *extra,
        "--",
        "--detect-model",
        "",
        "--segment-model",
        "",
        *locust,
    ]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)


def _stats(out: Path) -> dict[str, dict[str, str]]:
    with Path(f"{out}_stats.csv").open(newline="") as handle:
        return {row["Name"]: row for row in csv.DictReader(handle)}


def test_short_load_test_has_no_failures_and_writes_reports(
    bundled_server: RunningServer, tmp_path: Path
) -> None:
    out = tmp_path / "load"
    metrics = f"127.0.0.1:{bundled_server.metrics_port}"
    result = _run(
        bundled_server.url,
        out,
        *("--p99-ms", "5000", "--metrics-url", metrics),
        locust=(
            *("--sequence-model", "lstm_reader", "--translate-model", "date_translator"),
            *("--act-model", "cartpole_policy", "--generate-model", "mnist_cgan"),
            *("--similar-model", "word_similar", "--read-model", "read_number"),
        ),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    stats = _stats(out)
    assert {"Classify mnist", "ModelInfer mnist", "Aggregated"} <= set(stats)
    # The sequence user: its steps, and whole digits read right (a wrong one is a failure).
    assert int(stats["Sequence lstm_reader (a digit)"]["Request Count"]) > 0
    assert int(stats["Sequence step lstm_reader"]["Request Count"]) >= 7
    # The translate user: streamed dates timed to their first and last character, checked.
    last = stats["Translate date_translator (last token)"]
    first = stats["Translate date_translator (first token)"]
    assert int(last["Request Count"]) > 0 and int(first["Request Count"]) > 0
    assert float(first["Median Response Time"]) <= float(last["Median Response Time"])
    # The act user: CartPole episodes a step a request, each balanced to the end.
    # An episode is 500 steps: a loaded split server may not finish one in 10 s. Random pushes
    # drop the pole within about 22 steps, and a dropped pole ends its episode as a failure.
    assert int(stats["Act cartpole_policy"]["Request Count"]) >= 40
    episodes = stats.get("Episode cartpole_policy", {"Failure Count": "0"})
    assert int(episodes["Failure Count"]) == 0
    # The generate user: 16 digits a request, each with a digit's ink.
    assert int(stats["Generate mnist_cgan (16 digits)"]["Request Count"]) > 0
    # The words user: words embedded, then one searched for, each answer checked.
    assert int(stats["Embed word_embed (8 words)"]["Request Count"]) > 0
    assert int(stats["Similar word_similar"]["Request Count"]) > 0
    # The read user: house numbers read by the pipeline in one call, each text checked.
    assert int(stats["Read read_number"]["Request Count"]) > 0
    assert int(stats["Aggregated"]["Request Count"]) > 20
    assert int(stats["Aggregated"]["Failure Count"]) == 0
    html = Path(f"{out}.html").read_text()
    assert "Classify mnist" in html and "ModelInfer mnist" in html
    for suffix in ("_over_time.png", "_vs_users.png"):
        assert Path(f"{out}{suffix}").stat().st_size > 5_000
    summary = Path(f"{out}_summary.md").read_text()
    assert "Classify mnist" in summary and "Average batch size" in summary
    # The server's side of the same period, from its histograms.
    assert "## The server's view of the same period" in summary
    row = next(line for line in summary.splitlines() if line.startswith("| mnist v1 |"))
    requests, p50, p99, mean, queue, share, batch = (cell.strip() for cell in row.split("|")[2:9])
    assert int(requests) >= int(stats["Classify mnist"]["Request Count"])
    assert 0 < float(p50) <= float(p99) and float(mean) > 0 and float(batch) >= 1
    assert 0 <= float(queue) <= float(mean) and share.endswith("%")


def test_wrong_model_under_the_right_name_fails_the_checks(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    # A model named mnist that takes MNIST's input but answers from random weights.
    config = (
        CLASSIFIER_CONFIG.replace("dims: [ 8 ]", "dims: [ 28, 28, 1 ]")
        + """
parameters { key: "task" value { string_value: "classification" } }
parameters { key: "image_height" value { string_value: "28" } }
parameters { key: "image_width" value { string_value: "28" } }
parameters { key: "image_channels" value { string_value: "1" } }
"""
    )
    write_model(
        repo,
        "mnist",
        linear_classifier(features=784, seed=3, shape=[28, 28, 1]),
        config,
        files={"labels.txt": "\n".join(str(d) for d in range(10)) + "\n"},
    )
    with run_server(repo, tmp_path) as server:
        out = tmp_path / "load"
        result = _run(server.url, out, "--p99-ms", "5000")
    assert result.returncode == 1, result.stdout[-3000:]  # the SLO gate sees the failures
    stats = _stats(out)
    assert int(stats["Aggregated"]["Failure Count"]) > 0
    with Path(f"{out}_failures.csv").open(newline="") as handle:
        errors = " ".join(row["Error"] for row in csv.DictReader(handle))
    assert "expected" in errors
    assert DIGIT_LABELS  # the labels file above names digits as MNIST's: "0".."9"


def test_slo_gate_names_what_broke(tmp_path: Path) -> None:
    stats = tmp_path / "s_stats.csv"
    header = "Type,Name,Request Count,Failure Count,99%\n"
    stats.write_text(header + "grpc,Classify,100,2,40\n,Aggregated,100,2,40\n")
    command = [
        sys.executable,
        "-m",
        "loadtests.slo",
        str(stats),
        "--p99-ms",
        "30",
        "--max-failure-ratio",
        "0.01",
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1
    assert "failure ratio 0.0200 > 0.01" in result.stdout and "p99 40 ms > 30 ms" in result.stdout
    ok = subprocess.run(
        [*command[:4], "--p99-ms", "100", "--max-failure-ratio", "0.05"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and "SLO met" in ok.stdout


def test_server_view_quantiles_interpolate_as_prometheus_does() -> None:
    from loadtests.server_view import quantile

    # 50 observations at or below 0.1 s, 50 more in (0.1, 0.2]: worked by hand.
    buckets = [(0.1, 50.0), (0.2, 100.0), (float("inf"), 100.0)]
    assert quantile(0.5, buckets) == 0.1
    assert abs(quantile(0.75, buckets) - 0.15) < 1e-12
    assert abs(quantile(0.99, buckets) - 0.198) < 1e-12
    # Past the last finite bound Prometheus answers that bound.
    assert quantile(0.99, [(0.1, 10.0), (float("inf"), 20.0)]) == 0.1
    assert quantile(0.5, [(0.1, 0.0), (float("inf"), 0.0)]) is None


def test_the_http_user_has_no_failures(bundled_server: RunningServer, tmp_path: Path) -> None:
    """Locust's FastHttpUser on the HTTP port: Vision classify and v2 binary infer, checked."""
    out = tmp_path / "http"
    command = [
        sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile_http.py"),
        "--host", bundled_server.url,
        "--http-url", f"http://127.0.0.1:{bundled_server.http_port}",
        "--headless", "--users", "4", "--spawn-rate", "4", "--run-time", "8s",
        "--csv", str(out), "--only-summary", "--exit-code-on-error", "0",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    stats = _stats(out)
    assert {"HTTP classify mnist", "HTTP infer mnist"} <= set(stats), result.stderr[-3000:]
    assert int(stats["Aggregated"]["Request Count"]) > 20
    assert int(stats["Aggregated"]["Failure Count"]) == 0, Path(f"{out}_failures.csv").read_text()
