"""The `deepserve` command: `serve`, `models`, and `classify`, `detect`, `segment` for people.

Every `serve` option can also be set by an environment variable, DEEPSERVE_<OPTION> (for
example DEEPSERVE_PORT=9001), which containers use; a flag on the command line wins.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import cli_connection
from ._version import __version__
from .cli_agents import add_agent_commands
from .cli_embeddings import add_embedding_commands
from .cli_generate import add_generate_command
from .cli_sequences import add_generation_commands, add_sequence_commands
from .cli_tasks import add_task_commands
from .server.cli import add_serve_command
from .tuning.cli import add_tune_command


def _env(name: str, default: str) -> str:
    return os.environ.get(f"DEEPSERVE_{name}", default)


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
    cli_connection.add_connection_options(models, url=False)
    models.set_defaults(run=_run_models)


def _add_health(commands: argparse._SubParsersAction) -> None:
    health = commands.add_parser(
        "health",
        help="ask a server's grpc.health.v1 service; exit 0 when SERVING (container probes)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    health.add_argument("--url", default=_env("URL", "localhost:8001"), help="server address")
    health.add_argument("--service", default="", help="a model name; empty: the whole server")
    health.add_argument("--timeout", type=float, default=3.0, help="seconds")
    cli_connection.add_connection_options(health, url=False)
    health.set_defaults(run=_run_health)


def _run_health(args: argparse.Namespace) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with cli_connection.open_channel(args) as channel:
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
        from tritonclient.utils import InferenceServerException

        try:
            return _print_index(args)
        except InferenceServerException as exc:
            print(f"{args.url}: {exc.status() or 'error'}: {exc.message()}", file=sys.stderr)
            return 1
    from .server.cli import list_repository

    return list_repository(args.model_repository)


def _print_index(args: argparse.Namespace) -> int:
    import tritonclient.grpc as triton

    client = triton.InferenceServerClient(
        args.url,
        ssl=cli_connection.uses_tls(args),
        root_certificates=str(args.tls_ca) if args.tls_ca else None,
        private_key=str(args.tls_key) if args.tls_key else None,
        certificate_chain=str(args.tls_cert) if args.tls_cert else None,
    )
    index = client.get_model_repository_index(headers=cli_connection.metadata(args), as_json=True)
    for row in index.get("models", []):
        print(
            f"{row['name']:24} {row.get('version', '-'):>7}  {row.get('state', '')}  "
            f"{row.get('reason', '')}".rstrip()
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepserve", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"deepserve {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    add_serve_command(commands)
    _add_models(commands)
    _add_health(commands)
    add_task_commands(commands)
    add_sequence_commands(commands)
    add_generation_commands(commands)
    add_agent_commands(commands)
    add_generate_command(commands)
    add_embedding_commands(commands)
    add_tune_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
