"""The `deepserve` command: `serve`, `models`, and `classify`, `detect`, `segment` for people.

Every `serve` option can also be set by an environment variable, DEEPSERVE_<OPTION> (for
example DEEPSERVE_PORT=9001), which containers use; a flag on the command line wins.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .cli_tasks import add_task_commands


def _env(name: str, default: str) -> str:
    return os.environ.get(f"DEEPSERVE_{name}", default)


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(f"DEEPSERVE_{name}")
    return default if value is None else value.strip().lower() in {"1", "true", "yes", "on"}


def _add_serve(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve a model repository over gRPC (Open Inference Protocol / KServe v2)",
        description="Serve every model of a Triton-style model repository over gRPC. "
        "Each option may also come from DEEPSERVE_<OPTION> in the environment.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    serve.add_argument(
        "--model-repository",
        type=Path,
        default=Path(_env("MODEL_REPOSITORY", "models")),
        help="folder with <model>/config.pbtxt and <model>/<version>/model.onnx",
    )
    serve.add_argument("--host", default=_env("HOST", "0.0.0.0"), help="address to bind")
    serve.add_argument(
        "--port",
        type=int,
        default=int(_env("PORT", "8001")),
        help="gRPC port; 0 picks a free one (logged)",
    )
    serve.add_argument(
        "--metrics-port",
        type=int,
        default=int(_env("METRICS_PORT", "8002")),
        help="Prometheus /metrics HTTP port; 0 turns metrics off",
    )
    serve.add_argument(
        "--model",
        dest="models",
        action="append",
        default=[m for m in _env("MODELS", "").split(",") if m],
        help="load only this model at start (repeatable); default: all",
    )
    serve.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default=_env("DEVICE", "auto"),
        help="auto: CUDA/TensorRT when installed and a GPU answers, else CPU",
    )
    serve.add_argument(
        "--intra-op-threads",
        type=int,
        default=int(_env("INTRA_OP_THREADS", "0")),
        help="ONNX Runtime intra-op threads per session (0: its default)",
    )
    serve.add_argument(
        "--default-max-batch-size",
        type=int,
        default=int(_env("DEFAULT_MAX_BATCH_SIZE", "32")),
        help="max_batch_size for batching models that have no config.pbtxt",
    )
    serve.add_argument(
        "--max-message-mb",
        type=int,
        default=int(_env("MAX_MESSAGE_MB", "64")),
        help="largest gRPC message received or sent, in MiB",
    )
    serve.add_argument(
        "--strict-readiness",
        action=argparse.BooleanOptionalAction,
        default=_env_bool("STRICT_READINESS", True),
        help="ready only when every model to load is ready (else: when any is)",
    )
    serve.add_argument(
        "--grace-seconds",
        type=float,
        default=float(_env("GRACE_SECONDS", "10")),
        help="on SIGTERM, time given to in-flight requests before stopping",
    )
    serve.add_argument(
        "--max-queue-size",
        type=int,
        default=int(_env("MAX_QUEUE_SIZE", "1024")),
        help="requests that may wait per model and priority level when its config sets no "
        "max_queue_size; past it the server answers RESOURCE_EXHAUSTED",
    )
    serve.add_argument(
        "--event-loop",
        choices=["auto", "uvloop", "asyncio"],
        default=_env("EVENT_LOOP", "auto"),
        help="auto: uvloop when installed (less CPU per request), else asyncio",
    )
    serve.add_argument(
        "--log-level",
        default=_env("LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log verbosity",
    )
    serve.set_defaults(run=_run_serve)


def _add_models(commands: argparse._SubParsersAction) -> None:
    models = commands.add_parser(
        "models",
        help="list the models of a repository folder, or of a running server with --url",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    models.add_argument(
        "--model-repository",
        type=Path,
        default=Path(_env("MODEL_REPOSITORY", "models")),
        help="repository folder to read",
    )
    models.add_argument(
        "--url",
        default=None,
        help="ask a running server (host:port) for its repository index instead",
    )
    models.set_defaults(run=_run_models)


def _run_serve(args: argparse.Namespace) -> int:
    from .server.app import serve  # the server extra is needed only here
    from .server.settings import MIB, ServerSettings

    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = ServerSettings(
        model_repository=args.model_repository,
        host=args.host,
        port=args.port,
        metrics_port=args.metrics_port,
        models=tuple(args.models),
        device=args.device,
        intra_op_threads=args.intra_op_threads,
        default_max_batch_size=args.default_max_batch_size,
        max_message_bytes=args.max_message_mb * MIB,
        strict_readiness=args.strict_readiness,
        grace_seconds=args.grace_seconds,
        default_max_queue_size=args.max_queue_size,
    )
    if not settings.model_repository.is_dir():
        print(f"model repository '{settings.model_repository}' is not a folder", file=sys.stderr)
        return 2
    _run_event_loop(serve(settings), args.event_loop)
    return 0


def _run_event_loop(main: Coroutine[Any, Any, None], choice: str) -> None:
    """uvloop cuts the event loop's share of each request; asyncio is the fallback."""
    if choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise
        else:
            logging.getLogger("deepserve").info("event loop: uvloop")
            uvloop.run(main)
            return
    logging.getLogger("deepserve").info("event loop: asyncio")
    asyncio.run(main)


def _add_health(commands: argparse._SubParsersAction) -> None:
    health = commands.add_parser(
        "health",
        help="ask a server's grpc.health.v1 service; exit 0 when SERVING (container probes)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    health.add_argument("--url", default=_env("URL", "localhost:8001"), help="server address")
    health.add_argument("--service", default="", help="a model name; empty: the whole server")
    health.add_argument("--timeout", type=float, default=3.0, help="seconds")
    health.set_defaults(run=_run_health)


def _run_health(args: argparse.Namespace) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(args.url) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError as error:
            print(f"{args.url}: {error.code().name} {error.details()}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    print(f"{args.url} {args.service or '(server)'}: {status}")
    return 0 if response.status == health_pb2.HealthCheckResponse.SERVING else 1


def _run_models(args: argparse.Namespace) -> int:
    if args.url:
        import tritonclient.grpc as triton

        client = triton.InferenceServerClient(args.url)
        for row in client.get_model_repository_index(as_json=True).get("models", []):
            print(
                f"{row['name']:24} {row.get('version', '-'):>7}  {row.get('state', '')}  "
                f"{row.get('reason', '')}".rstrip()
            )
        return 0
    from .server import repository
    from .server.errors import ModelLoadError

    names = repository.model_names(args.model_repository)
    if not names:
        print(f"no models in '{args.model_repository}'")
        return 1
    for name in names:
        model_dir = args.model_repository / name
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepserve", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"deepserve {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_serve(commands)
    _add_models(commands)
    _add_health(commands)
    add_task_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
