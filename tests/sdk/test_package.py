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
    root = Path(__file__).resolve().parents[2]
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    for package, folder in setuptools["package-dir"].items():
        for init in (root / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(root / folder)
            name = ".".join([package, *relative.parts])
            assert name in listed, f"{name} ({init.parent.relative_to(root)}) is not in pyproject"


def _imported_top_levels(folder: Path) -> set[str]:
    """Top-level modules the code in `folder` imports (absolute imports only)."""
    import ast

    names: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"deepserve", "__future__"}


def test_every_module_the_server_imports_is_a_declared_gpu_dependency() -> None:
    """The GPU bundle is resolved from the SDK's dependencies and the gpu extra: a module the
    server or the SDK imports must come from one of them, or the GPU host fails with an
    ImportError in its one device window."""
    import re
    from importlib.metadata import packages_distributions

    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["gpu"]

    def normal(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    declared = {normal(re.split(r"[\[<>=!;~ ]", r, maxsplit=1)[0]) for r in requirements}
    declared |= {"onnxruntime"}  # onnxruntime-gpu installs the same module
    distributions = packages_distributions()
    # Imported where used, with a message saying what to install: not the server's to need.
    optional = {"gymnasium"}  # `deepserve act` simulates CartPole on the client's side
    imported = _imported_top_levels(root / "server") | _imported_top_levels(root / "sdk")
    for name in sorted(imported - optional):
        # nvidia-ml-py is the gpu extra's alone, not installed on a CPU machine
        found = distributions.get(name) or {"pynvml": ["nvidia-ml-py"]}.get(name, [])
        provided = {normal(d) for d in found}
        assert provided & declared, f"'{name}' (from {provided}) is in no declared dependency"
