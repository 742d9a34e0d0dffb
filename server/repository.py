"""The model repository on disk, in Triton's layout.

    <repository>/<model>/config.pbtxt        ModelConfig, protobuf text format (optional)
    <repository>/<model>/<labels file>       named by an output's `label_filename` (optional)
    <repository>/<model>/<version>/model.onnx

This module only reads files; building sessions from them is the runtime's job.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from .errors import ModelLoadError

CONFIG_FILENAME = "config.pbtxt"
DEFAULT_MODEL_FILENAME = "model.onnx"
ONNX_PLATFORM = "onnxruntime_onnx"
ONNX_BACKEND = "onnxruntime"


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
    if config.name and config.name != model_dir.name:
        raise ModelLoadError(
            f"{CONFIG_FILENAME} names the model '{config.name}' "
            f"but its folder is '{model_dir.name}'"
        )
    config.name = model_dir.name
    if config.platform and config.platform != ONNX_PLATFORM:
        raise ModelLoadError(
            f"platform '{config.platform}' is not served; deepserve runs '{ONNX_PLATFORM}' models"
        )
    if config.backend and config.backend != ONNX_BACKEND:
        raise ModelLoadError(
            f"backend '{config.backend}' is not served; deepserve runs '{ONNX_BACKEND}' models"
        )
    return config


def version_folders(model_dir: Path) -> list[int]:
    """Numeric sub-folders of a model, ascending: the versions present on disk."""
    return sorted(
        int(entry.name) for entry in model_dir.iterdir() if entry.is_dir() and entry.name.isdigit()
    )


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
    path = model_dir / str(version) / (config.default_model_filename or DEFAULT_MODEL_FILENAME)
    if not path.is_file():
        raise ModelLoadError(f"version {version} has no model file {path.name}")
    return path


def read_labels(model_dir: Path, config: mc.ModelConfig) -> dict[str, list[str]]:
    """Labels per output, from the files the config's outputs name (one label per line)."""
    labels: dict[str, list[str]] = {}
    for output in config.output:
        if not output.label_filename:
            continue
        path = model_dir / output.label_filename
        if not path.is_file():
            raise ModelLoadError(
                f"output '{output.name}' names label file '{output.label_filename}', "
                "which is missing"
            )
        lines = path.read_text(encoding="utf-8").splitlines()
        labels[output.name] = [line.strip() for line in lines if line.strip()]
    return labels
