"""deepserve: a gRPC model server for vision models, and the SDK to call it.

>>> from deepserve import Client
>>> Client("localhost:8001").classify("digit.png", model="mnist").label
'7'

`import deepserve` needs only the SDK's dependencies (numpy, grpcio, protobuf, tritonclient,
Pillow); the server lives in `deepserve.server` and needs the `server` extra.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .agents import Action
    from .aio import AsyncClient
    from .client import Client
    from .embeddings import Neighbour, UnknownWordsError
    from .errors import (
        AuthenticationError,
        DeadlineExceededError,
        DeepserveError,
        InvalidInputError,
        ModelNotFoundError,
        PermissionDeniedError,
        ServerBusyError,
        UnavailableError,
    )
    from .generation import Token, Translation
    from .results import (
        Box,
        Character,
        Classification,
        Detection,
        Label,
        ModelInfo,
        Reading,
        Segmentation,
    )
    from .sequences import AsyncSequenceSession, SequenceSession

# Loaded on first use, so `deepserve.server` and the command line do not load the client.
_LAZY = {
    "Action": "agents",
    "AsyncClient": "aio",
    "Client": "client",
    **dict.fromkeys(
        (
            "AuthenticationError",
            "DeadlineExceededError",
            "DeepserveError",
            "InvalidInputError",
            "ModelNotFoundError",
            "PermissionDeniedError",
            "ServerBusyError",
            "UnavailableError",
        ),
        "errors",
    ),
    **dict.fromkeys(
        (
            "Box",
            "Character",
            "Classification",
            "Detection",
            "Label",
            "ModelInfo",
            "Reading",
            "Segmentation",
        ),
        "results",
    ),
    **dict.fromkeys(("AsyncSequenceSession", "SequenceSession"), "sequences"),
    **dict.fromkeys(("Token", "Translation"), "generation"),
    **dict.fromkeys(("Neighbour", "UnknownWordsError"), "embeddings"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'deepserve' has no attribute '{name}'")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "Action",
    "AsyncClient",
    "AsyncSequenceSession",
    "AuthenticationError",
    "Box",
    "Character",
    "Classification",
    "Client",
    "DeadlineExceededError",
    "DeepserveError",
    "Detection",
    "InvalidInputError",
    "Label",
    "ModelInfo",
    "ModelNotFoundError",
    "Neighbour",
    "PermissionDeniedError",
    "Reading",
    "Segmentation",
    "SequenceSession",
    "ServerBusyError",
    "Token",
    "Translation",
    "UnavailableError",
    "UnknownWordsError",
    "__version__",
]
