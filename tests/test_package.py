"""`import deepserve` needs only the SDK's dependencies."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

BLOCK_SERVER_DEPENDENCIES = """
import sys
import tomllib
from pathlib import Path
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


def test_every_folder_of_python_code_is_a_listed_package() -> None:
    """pyproject.toml lists the packages by hand: a new subpackage left off would be missing
    from the wheel and the images (the editable install used by the tests would not notice)."""
    root = Path(__file__).resolve().parent.parent
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    for package, folder in setuptools["package-dir"].items():
        for init in (root / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(root / folder)
            name = ".".join([package, *relative.parts])
            assert name in listed, f"{name} ({init.parent.relative_to(root)}) is not in pyproject"
