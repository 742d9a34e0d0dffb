"""The `deepserve` command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ..onnx_models import int_negate, write_model
from ..server_process import RunningServer

CLI = [sys.executable, "-m", "deepserve.cli"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)


def test_serve_help_documents_every_option() -> None:
    result = _run("serve", "--help")
    assert result.returncode == 0
    for option in (
        "--model-repository",
        "--host",
        "--port",
        "--model",
        "--device",
        "--intra-op-threads",
        "--default-max-batch-size",
        "--max-message-mb",
        "--strict-readiness",
        "--grace-seconds",
        "--log-level",
    ):
        assert option in result.stdout


def test_models_lists_a_repository_folder(repository: Path) -> None:
    result = _run("models", "--model-repository", str(repository))
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert set(lines) == {"add_sub", "classifier", "negate", "strings", "versioned"}
    assert "versions [1, 3]" in lines["versioned"]
    assert "auto-config" in lines["negate"]
    assert "max_batch_size 8" in lines["add_sub"]


def test_models_reports_a_broken_config(tmp_path: Path) -> None:
    write_model(tmp_path, "broken", int_negate(), config="max_batch_size: [oops")
    result = _run("models", "--model-repository", str(tmp_path))
    assert "broken" in result.stdout and "error" in result.stdout


def test_models_asks_a_running_server(server: RunningServer) -> None:
    result = _run("models", "--url", server.url)
    assert result.returncode == 0, result.stderr
    assert any(
        line.split()[:3] == ["versioned", "3", "READY"] for line in result.stdout.splitlines()
    )


def test_serve_refuses_a_missing_repository(tmp_path: Path) -> None:
    result = _run("serve", "--model-repository", str(tmp_path / "absent"))
    assert result.returncode == 2
    assert "is not a folder" in result.stderr


def test_health_command_for_probes(server: RunningServer, tmp_path: Path) -> None:
    ok = _run("health", "--url", server.url)
    assert ok.returncode == 0 and "SERVING" in ok.stdout
    assert _run("health", "--url", server.url, "--service", "negate").returncode == 0
    assert _run("health", "--url", server.url, "--service", "nope").returncode == 1
    from ..server_process import free_port

    down = _run("health", "--url", f"127.0.0.1:{free_port()}", "--timeout", "1")
    assert down.returncode == 1


def test_classify_and_segment_commands(bundled_server: RunningServer, tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    digit = root / "docs" / "images" / "digit-7.png"
    result = _run("classify", str(digit), "--model", "mnist", "--url", bundled_server.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{digit}: 7 (")
    overlay = tmp_path / "overlay.png"
    scene = root / "docs" / "images" / "scene.png"
    result = _run(
        "segment",
        str(scene),
        "--model",
        "segmentation",
        "--url",
        bundled_server.url,
        "--out",
        str(overlay),
    )
    assert result.returncode == 0, result.stderr
    assert "classes present" in result.stdout
    from PIL import Image

    assert Image.open(overlay).size == Image.open(scene).size
    missing = _run("classify", str(digit), "--model", "nope", "--url", bundled_server.url)
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr


def test_detect_command_draws_boxes(bundled_server: RunningServer, tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    scene = root / "docs" / "images" / "scene.png"
    out = tmp_path / "boxes.png"
    result = _run(
        "detect", str(scene), "--model", "ssd", "--url", bundled_server.url, "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert " found" in result.stdout and " at [" in result.stdout
    from PIL import Image

    assert Image.open(out).size == Image.open(scene).size


def test_read_command_shows_the_readers_belief_row_by_row(bundled_server: RunningServer) -> None:
    digit = Path(__file__).resolve().parents[2] / "docs" / "images" / "digit-7.png"
    result = _run("read", str(digit), "--rows", "7", "--url", bundled_server.url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{digit}:"
    assert [line.split(":")[0].strip() for line in lines[1:5]] == [
        "rows  0- 6", "rows  7-13", "rows 14-20", "rows 21-27",
    ]  # fmt: skip
    assert lines[-1] == "  read: 7"
    refused = _run("read", str(digit), "--rows", "0", "--url", bundled_server.url)
    assert refused.returncode == 2 and "rows a request must be 1 to 28" in refused.stderr


def test_act_command_plays_episodes_and_draws_the_first(
    bundled_server: RunningServer, tmp_path: Path
) -> None:
    from PIL import Image

    gif = tmp_path / "episode.gif"
    result = _run("act", "--episodes", "2", "--gif", str(gif), "--url", bundled_server.url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == [
        "episode 1 (seed 1): return 500, balanced to the end",
        "episode 2 (seed 2): return 500, balanced to the end",
    ]
    assert lines[2].startswith("1000 calls to 'cartpole_policy': p50 ")
    with Image.open(gif) as animation:
        assert animation.n_frames == 250 and animation.size == (480, 240)  # every 2nd step
        animation.seek(100)
        frame = animation.convert("RGB")
    pole = (204, 153, 102)
    assert any(frame.getpixel((x, y)) == pole for x in range(480) for y in range(0, 144, 4))
    missing = _run("act", "--model", "nope", "--url", bundled_server.url)
    assert missing.returncode == 1 and "nope" in missing.stderr
