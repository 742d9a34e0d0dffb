"""deepserve: a gRPC model server for vision models, and the SDK to call it.

>>> from deepserve import Client
>>> Client("localhost:8001").classify("digit.png", model="mnist").label
'7'

`import deepserve` needs only the SDK's dependencies (numpy, grpcio, protobuf, tritonclient,
Pillow); the server lives in `deepserve.server` and needs the `server` extra.
"""

from importlib.metadata import PackageNotFoundError, version

from .aio import AsyncClient
from .client import Client
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
from .results import Box, Classification, Detection, Label, ModelInfo, Segmentation

try:
    __version__ = version("deepserve")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = [
    "AsyncClient",
    "AuthenticationError",
    "Box",
    "Classification",
    "Client",
    "DeadlineExceededError",
    "DeepserveError",
    "Detection",
    "InvalidInputError",
    "Label",
    "ModelInfo",
    "ModelNotFoundError",
    "PermissionDeniedError",
    "Segmentation",
    "ServerBusyError",
    "UnavailableError",
    "__version__",
]
