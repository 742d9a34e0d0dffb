"""The installed distribution's version; imports nothing of deepserve, so the server and the
command line can read it without loading the client."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("deepserve")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
