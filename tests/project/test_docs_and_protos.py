"""The README's first call runs as written; the committed generated code is current."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from ..server_process import RunningServer

ROOT = Path(__file__).resolve().parents[2]


def test_generated_proto_code_is_current() -> None:
    result = subprocess.run(
        [sys.executable, "proto/generate.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_first_call_runs_as_written(bundled_server: RunningServer) -> None:
    readme = (ROOT / "README.md").read_text()
    snippet = re.search(r"<!-- first-call -->\n```python\n(.*?)```", readme, re.S).group(1)
    assert 'Client("localhost:8001")' in snippet
    code = snippet.replace("localhost:8001", bundled_server.url)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("7 ("), result.stdout
