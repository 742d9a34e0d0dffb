"""Variants of an exported model (FP16, INT8): the source's newest graph, and a new model folder
beside it with the same config under the variant's name, its label files and notices."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc


def newest_version(model_dir: Path) -> Path:
    versions = sorted(
        int(p.name)
        for p in model_dir.iterdir()
        if p.name.isdigit() and (p / "model.onnx").is_file()
    )
    if not versions:
        raise FileNotFoundError(f"{model_dir.name}: no <version>/model.onnx")
    return model_dir / str(versions[-1]) / "model.onnx"


def read_config(model_dir: Path) -> mc.ModelConfig:
    return text_format.Parse((model_dir / "config.pbtxt").read_text(), mc.ModelConfig())


def takes_images(config: mc.ModelConfig) -> bool:
    """An image model: one HxWxC input, no sequence state, not a text generator."""
    return (
        config.backend != "seq2seq"
        and not config.HasField("sequence_batching")
        and bool(config.input)
        and len(config.input[0].dims) == 3
    )


def image_models(models: Path, suffixes: tuple[str, ...]) -> list[str]:
    """The image models of a repository that are not themselves variants."""
    return sorted(
        p.name
        for p in models.iterdir()
        if (p / "config.pbtxt").is_file()
        and not p.name.endswith(suffixes)
        and takes_images(read_config(p))
    )


def write_variant(
    model_dir: Path,
    out: Path,
    suffix: str,
    precision: str,
    write_graph: Callable[[Path, Path], None],
) -> Path:
    """<out>/<name><suffix>: version 1 written by `write_graph(source, destination)` from the
    newest version of `model_dir`, its config under the new name with parameter precision,
    and its label files and notices. Returns the variant's folder."""
    config = read_config(model_dir)
    source = newest_version(model_dir)
    variant = out / f"{config.name}{suffix}"
    path = variant / "1" / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_graph(source, path)
    config.name = variant.name
    config.parameters["precision"].string_value = precision
    (variant / "config.pbtxt").write_text(text_format.MessageToString(config))
    for extra in model_dir.iterdir():
        if extra.is_file() and (extra.suffix == ".txt" or extra.name == "NOTICE"):
            shutil.copyfile(extra, variant / extra.name)
    return variant
