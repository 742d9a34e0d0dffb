"""`import deepserve` needs only the SDK's dependencies."""

from __future__ import annotations

import subprocess
import sys

BLOCK_SERVER_DEPENDENCIES = """
import sys
for name in ("onnxruntime", "torch", "torchvision", "onnx", "grpc_health", "grpc_reflection"):
    sys.modules[name] = None  # any import of these now fails
import deepserve
import deepserve.cli
print(deepserve.__version__)
"""


def test_import_deepserve_without_server_dependencies() -> None:
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_SERVER_DEPENDENCIES], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
