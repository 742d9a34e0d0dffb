"""deepserve: a gRPC model server for vision models, and the SDK to call it.

`import deepserve` needs only the SDK's dependencies (numpy, grpcio, protobuf, tritonclient);
the server lives in `deepserve.server` and needs the `server` extra.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("deepserve")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
