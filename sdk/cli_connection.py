"""How the command line reaches a server: address, bearer token and TLS options, shared by
`classify`, `detect`, `segment`, `models --url` and `health`.

The token is never a flag (a command line is visible to every user of the host): it comes from
DEEPSERVE_TOKEN or from the file --token-file names. (DEEPSERVE_TOKEN_FILE is the server's file
of tokens and scopes, a different thing.)
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import grpc

from .client import Client


def add_connection_options(parser: argparse.ArgumentParser, url: bool = True) -> None:
    if url:
        parser.add_argument(
            "--url",
            default=os.environ.get("DEEPSERVE_URL", "localhost:8001"),
            help="server address (env DEEPSERVE_URL)",
        )
    parser.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help="file holding the bearer token, or the server's token file (its first token); "
        "default: the token in DEEPSERVE_TOKEN, if set",
    )
    parser.add_argument(
        "--tls", action="store_true", help="use TLS with the system's root certificates"
    )
    parser.add_argument(
        "--tls-ca",
        type=Path,
        default=os.environ.get("DEEPSERVE_TLS_CA") or None,
        help="PEM root certificates to check the server with (implies --tls; env DEEPSERVE_TLS_CA)",
    )
    parser.add_argument(
        "--tls-cert",
        type=Path,
        default=os.environ.get("DEEPSERVE_TLS_CERT") or None,
        help="PEM client certificate, for mutual TLS (env DEEPSERVE_TLS_CERT)",
    )
    parser.add_argument(
        "--tls-key",
        type=Path,
        default=os.environ.get("DEEPSERVE_TLS_KEY") or None,
        help="PEM key of --tls-cert (env DEEPSERVE_TLS_KEY)",
    )


def token_from_file(text: str, source: str) -> str | None:
    """A file of one bare token, or a server's token file ('<scopes> <token>' lines, '#'
    comments): its first token (every token may infer)."""
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) > 2:
            raise SystemExit(
                f"deepserve: {source}: expected a bearer token, or '<scopes> <token>' lines "
                f"as the server reads them; a line has {len(fields)} fields"
            )
        return fields[-1]
    return None


def token(args: argparse.Namespace) -> str | None:
    if args.token_file is not None:
        text = args.token_file.read_text(encoding="utf-8")
        return token_from_file(text, str(args.token_file))
    return os.environ.get("DEEPSERVE_TOKEN") or None


def _read(path: Path | None) -> bytes | None:
    return path.read_bytes() if path is not None else None


def uses_tls(args: argparse.Namespace) -> bool:
    return bool(args.tls or args.tls_ca or args.tls_cert)


def channel_credentials(args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    if not uses_tls(args):
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=_read(args.tls_ca),
        private_key=_read(args.tls_key),
        certificate_chain=_read(args.tls_cert),
    )


def open_channel(args: argparse.Namespace) -> grpc.Channel:
    credentials = channel_credentials(args)
    if credentials is None:
        return grpc.insecure_channel(args.url)
    return grpc.secure_channel(args.url, credentials)


def client(args: argparse.Namespace) -> Client:
    return Client(
        args.url,
        timeout=args.timeout,
        credentials=channel_credentials(args),
        token=token(args),
    )


def metadata(args: argparse.Namespace) -> dict[str, str]:
    bearer = token(args)
    return {"authorization": f"Bearer {bearer}"} if bearer else {}
