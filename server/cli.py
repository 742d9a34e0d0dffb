"""`deepserve serve`: the command line and the DEEPSERVE_* variables, generated from
ServerSettings. A flag wins over the environment, which wins over the field's default.

Only the standard library is imported at module level, so `deepserve --help` works with the SDK
alone; the server itself is imported when it runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .settings import ServerSettings

ENV_PREFIX = "DEEPSERVE_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _fields() -> list[tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(ServerSettings)
    return [(f, hints[f.name]) for f in dataclasses.fields(ServerSettings) if f.metadata]


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _flag(f: dataclasses.Field) -> str:
    return f.metadata["flag"] or "--" + f.name.replace("_", "-")


def _from_text(kind: Any, text: str, name: str) -> Any:
    """A setting's value from its environment variable's text."""
    if kind is bool:
        lowered = text.strip().lower()
        if lowered not in _TRUE | _FALSE:
            raise SystemExit(f"{env_name(name)}: expected true or false, got {text!r}")
        return lowered in _TRUE
    if kind == tuple[str, ...]:
        return tuple(item.strip() for item in text.split(",") if item.strip())
    if kind == Path | None:
        return Path(text) if text else None
    try:
        return kind(text)
    except ValueError as exc:
        raise SystemExit(f"{env_name(name)}: {exc}") from exc


def add_serve_options(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    """One option per setting, its default taken from the environment when set there."""
    env_only: list[str] = []
    for f, kind in _fields():
        factory = f.default_factory  # MISSING (not callable) when the field has a plain default
        default = factory() if callable(factory) else f.default
        if env_name(f.name) in environ:
            default = _from_text(kind, environ[env_name(f.name)], f.name)
        if f.metadata["env_only"]:
            env_only.append(f"{env_name(f.name)}: {f.metadata['help']}")
            parser.set_defaults(**{f.name: default})
            continue
        common: dict[str, Any] = {"dest": f.name, "help": f.metadata["help"]}
        if kind is bool:
            parser.add_argument(
                _flag(f), action=argparse.BooleanOptionalAction, default=default, **common
            )
        elif kind == tuple[str, ...]:
            # Repeated flags replace the environment's list rather than add to it.
            parser.add_argument(_flag(f), action="append", default=None, **common)
            parser.set_defaults(**{f"{f.name}__env": default})
        else:
            convert = Path if kind == Path | None else kind
            parser.add_argument(
                _flag(f), type=convert, default=default, choices=f.metadata["choices"], **common
            )
    parser.epilog = (
        "Every option can also be set as DEEPSERVE_<OPTION> in the environment (for example "
        "DEEPSERVE_PORT=9001; lists comma-separated). Only in the environment: "
        + "; ".join(env_only)
    )


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    values: dict[str, Any] = {}
    for f, kind in _fields():
        value = getattr(args, f.name)
        if kind == tuple[str, ...]:
            value = tuple(value) if value is not None else getattr(args, f"{f.name}__env")
        values[f.name] = value
    return ServerSettings(**values)


def add_serve_command(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve a model repository over gRPC (Open Inference Protocol / KServe v2)",
        description="Serve the models of a Triton-style model repository over gRPC.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_serve_options(serve, os.environ)
    serve.set_defaults(run=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    from .observability import logs

    logs.setup(settings.log_level, settings.log_format)
    if not settings.model_repository.is_dir():
        print(f"model repository '{settings.model_repository}' is not a folder", file=sys.stderr)
        return 2
    from .app import ConfigurationError, serve  # the server extra is needed only here
    from .event_loop import run

    try:
        if settings.frontends:
            from .split.supervisor import run_split

            return run_split(settings)
        run(serve(settings), settings.event_loop)
    except ConfigurationError as exc:
        print(f"deepserve: {exc}", file=sys.stderr)
        return 2
    return 0


def list_repository(repository_dir: Path) -> int:
    """`deepserve models --model-repository DIR`: what a repository folder holds, read as the
    server reads it (configs completed, versions selected), without loading a model."""
    from .models import repository
    from .protocol.errors import ModelLoadError

    names = repository.model_names(repository_dir)
    if not names:
        print(f"no models in '{repository_dir}'")
        return 1
    for name in names:
        model_dir = repository_dir / name
        try:
            config = repository.read_config(model_dir)
            present = repository.version_folders(model_dir)
            served = repository.select_versions(config, present)
        except ModelLoadError as exc:
            print(f"{name:24} error: {exc}")
            continue
        source = (
            "config.pbtxt" if (model_dir / repository.CONFIG_FILENAME).is_file() else "auto-config"
        )
        tensors = ", ".join(f"{t.name}{list(t.dims)}" for t in config.input) or "from graph"
        print(
            f"{name:24} versions {served} ({source}; max_batch_size {config.max_batch_size}; "
            f"inputs {tensors})"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m deepserve.server [options]`: `deepserve serve` without the client's commands."""
    parser = argparse.ArgumentParser(
        prog="python -m deepserve.server",
        description="Serve the models of a Triton-style model repository over gRPC and HTTP.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_serve_options(parser, os.environ)
    return run_serve(parser.parse_args(argv))
