"""The model repository on disk, in Triton's layout.

    <repository>/<model>/config.pbtxt        ModelConfig, protobuf text format (optional)
    <repository>/<model>/<labels file>       named by an output's `label_filename` (optional)
    <repository>/<model>/<version>/model.onnx

This module only reads files; building sessions from them is the runtime's job.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from ..protocol.errors import ModelLoadError
from ..protocol.generator_config import BACKEND as SEQ2SEQ_BACKEND
from ..protocol.numbers import decimal

CONFIG_FILENAME = "config.pbtxt"
DEFAULT_MODEL_FILENAME = "model.onnx"
ONNX_PLATFORM = "onnxruntime_onnx"
ENSEMBLE_PLATFORM = "ensemble"
ONNX_BACKEND = "onnxruntime"
SERVED_BACKENDS = (ONNX_BACKEND, SEQ2SEQ_BACKEND)
"""ONNX models, and text generators (an encoder and a one-step decoder the server loops)."""
MAX_LABEL_FILE_BYTES = 16 * 1024 * 1024


def model_names(repository: Path) -> list[str]:
    """The models a repository holds: its sub-folders, hidden ones excepted, sorted."""
    if not repository.is_dir():
        return []
    return sorted(
        entry.name
        for entry in repository.iterdir()
        if entry.is_dir() and not entry.name.startswith((".", "_"))
    )


def read_config(model_dir: Path) -> mc.ModelConfig:
    """The model's config.pbtxt, or an empty config (to be auto-completed) when there is none."""
    path = model_dir / CONFIG_FILENAME
    config = mc.ModelConfig()
    if path.is_file():
        try:
            text_format.Parse(path.read_text(encoding="utf-8"), config)
        except (text_format.ParseError, UnicodeDecodeError) as exc:
            raise ModelLoadError(
                f"{CONFIG_FILENAME} does not parse as a ModelConfig: {exc}"
            ) from exc
    return check_config(config, model_dir.name, CONFIG_FILENAME)


def check_config(config: mc.ModelConfig, name: str, source: str) -> mc.ModelConfig:
    """What every config must satisfy, whether from config.pbtxt or a load call's override:
    its name, platform and backend, and file names that stay inside the model's folder."""
    if config.name and config.name != name:
        raise ModelLoadError(f"{source} names the model '{config.name}' but its folder is '{name}'")
    config.name = name
    if config.platform and config.platform not in (ONNX_PLATFORM, ENSEMBLE_PLATFORM):
        raise ModelLoadError(
            f"platform '{config.platform}' is not served; deepserve runs '{ONNX_PLATFORM}' "
            f"models and '{ENSEMBLE_PLATFORM}' chains of them"
        )
    if config.backend and config.backend not in SERVED_BACKENDS:
        raise ModelLoadError(
            f"backend '{config.backend}' is not served; deepserve runs {list(SERVED_BACKENDS)} "
            "models"
        )
    if config.default_model_filename:
        check_file_name("default_model_filename", config.default_model_filename)
    for output in config.output:
        if output.label_filename:
            check_file_name(f"output '{output.name}' label_filename", output.label_filename)
    return config


def check_file_name(what: str, value: str) -> None:
    """A file name in a config is relative to the model's folder and stays inside it."""
    relative = PurePosixPath(value.replace("\\", "/"))
    if relative.is_absolute() or ".." in relative.parts or value.startswith("~") or ":" in value:
        raise ModelLoadError(
            f"{what} '{value}' must be a file name inside the model's folder (no absolute path, "
            "no '..')"
        )


def inside(model_dir: Path, relative: str, what: str) -> Path:
    """model_dir / relative, refused when it resolves (symbolic links followed) outside it."""
    path = model_dir / relative
    root = model_dir.resolve()
    if not path.resolve().is_relative_to(root):
        raise ModelLoadError(f"{what} '{relative}' resolves outside the model's folder")
    return path


def version_folders(model_dir: Path) -> list[int]:
    """Numeric sub-folders of a model, ascending: the versions present on disk."""
    numbers = (decimal(entry.name) for entry in model_dir.iterdir() if entry.is_dir())
    return sorted(number for number in numbers if number is not None)


def select_versions(config: mc.ModelConfig, present: list[int]) -> list[int]:
    """The versions to serve under the config's version_policy (default: the latest one)."""
    policy = config.version_policy
    which = policy.WhichOneof("policy_choice")
    if which == "all":
        chosen = list(present)
    elif which == "specific":
        wanted = sorted(set(policy.specific.versions))
        missing = [v for v in wanted if v not in present]
        if missing:
            raise ModelLoadError(
                f"version_policy asks for versions {missing} that have no folder; "
                f"present: {present}"
            )
        chosen = wanted
    else:
        count = policy.latest.num_versions if which == "latest" else 1
        chosen = present[-max(count, 1) :] if present else []
    if not chosen:
        raise ModelLoadError("no version folder (e.g. 1/model.onnx) found")
    return chosen


def model_file(model_dir: Path, version: int, config: mc.ModelConfig) -> Path:
    filename = config.default_model_filename or DEFAULT_MODEL_FILENAME
    path = inside(model_dir, f"{version}/{filename}", "model file")
    if not path.is_file():
        raise ModelLoadError(f"version {version} has no model file {filename}")
    return path


def read_labels(model_dir: Path, config: mc.ModelConfig) -> dict[str, list[str]]:
    """Labels per output, from the files the config's outputs name (one label per line)."""
    labels: dict[str, list[str]] = {}
    for output in config.output:
        if not output.label_filename:
            continue
        what = f"output '{output.name}' label file"
        path = inside(model_dir, output.label_filename, what)
        if not path.is_file():
            raise ModelLoadError(f"{what} '{output.label_filename}' is missing")
        if path.stat().st_size > MAX_LABEL_FILE_BYTES:
            raise ModelLoadError(
                f"{what} '{output.label_filename}' is larger than {MAX_LABEL_FILE_BYTES} bytes"
            )
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise ModelLoadError(
                f"{what} '{output.label_filename}' is not UTF-8 text (byte {exc.start})"
            ) from None
        labels[output.name] = [line.strip() for line in lines if line.strip()]
    return labels


def redact(text: str, repository: Path) -> str:
    """`text` with the repository's location on the server's disk replaced: load errors go to
    clients, who have no business knowing the server's paths."""
    roots = {str(repository.resolve()), str(repository.absolute()), str(repository)}
    for root in sorted(roots, key=len, reverse=True):
        if root not in (".", ""):
            text = text.replace(root, "<repository>")
    return text
