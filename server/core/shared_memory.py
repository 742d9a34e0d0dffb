"""System shared memory, as Triton offers it (the Open Inference Protocol's extension): a
client on the same host registers a region of a POSIX shared memory object (`/dev/shm/KEY`)
under a name, and requests name regions for inputs to read and outputs to fill instead of
carrying the bytes. Registering and unregistering are admin calls.

What a region may be is checked when it is registered: a key of one path component, a regular
file owned by this server's user (never another user's memory, never a link), the offset and
size inside the file. Each use checks the tensor's bytes lie inside the region and the file was
not cut short since (reading past its end would kill the process). Regions are released on
unregister and when the server stops."""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import re
import stat
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Protocol

from ..protocol.errors import AlreadyExists, ErrorKind, InvalidInput, ServerBusy, ServingError

log = logging.getLogger(__name__)

SHM_ROOT = Path("/dev/shm")
MAX_REGIONS = 256
"""Regions registered at once: each holds a file descriptor and a mapping."""
_KEY = re.compile(r"/?[A-Za-z0-9_.\-]{1,200}")


OFF = (
    "system shared memory is off on this server: it is on when tokens are configured "
    "(registering then needs the admin scope), or with --shared-memory on"
)


def shared_memory_on(setting: str, tokens: bool) -> bool:
    """--shared-memory auto is on only with tokens: without them any local user could map
    shared memory of this server's user through it."""
    return setting == "on" or (setting == "auto" and tokens)


class SharedMemoryOff(ServingError):
    kind = ErrorKind.FAILED_PRECONDITION


class RegionNotFound(ServingError):
    kind = ErrorKind.NOT_FOUND


@dataclass(frozen=True)
class RegionStatus:
    name: str
    key: str
    offset: int
    byte_size: int


@dataclass
class _Region:
    status: RegionStatus
    fd: int
    mapping: mmap.mmap


class SharedMemory:
    def __init__(self, root: Path = SHM_ROOT, max_regions: int = MAX_REGIONS) -> None:
        self._root = root
        self._max_regions = max_regions
        self._regions: dict[str, _Region] = {}

    def register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        if not name or len(name) > 256:
            raise InvalidInput("a shared memory region needs a name of 1 to 256 characters")
        if name in self._regions:
            raise AlreadyExists(
                f"shared memory region '{name}' is already registered; unregister it first"
            )
        if len(self._regions) >= self._max_regions:
            raise ServerBusy(
                f"{len(self._regions)} shared memory regions are registered, this server's "
                "limit; unregister some first"
            )
        if not _KEY.fullmatch(key) or key.lstrip("/") in (".", ".."):
            raise InvalidInput(
                f"shared memory key {key[:64]!r}: expected the name of a POSIX shared memory "
                "object (letters, digits, '.', '_', '-', one optional leading '/')"
            )
        if offset < 0 or byte_size <= 0:
            raise InvalidInput(
                f"shared memory region '{name}': offset must be >= 0 and byte_size > 0, got "
                f"offset {offset}, byte_size {byte_size}"
            )
        fd = self._open(name, key)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
                raise InvalidInput(
                    f"shared memory key '{key}' is not a shared memory object of this server's user"
                )
            if offset + byte_size > info.st_size:
                raise InvalidInput(
                    f"shared memory region '{name}': offset {offset} + byte_size {byte_size} "
                    f"is past the end of '{key}' ({info.st_size} bytes)"
                )
            mapping = mmap.mmap(fd, offset + byte_size)
        except BaseException:
            os.close(fd)
            raise
        self._regions[name] = _Region(RegionStatus(name, key, offset, byte_size), fd, mapping)

    def _open(self, name: str, key: str) -> int:
        try:
            return os.open(self._root / key.lstrip("/"), os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise InvalidInput(
                f"shared memory region '{name}': cannot open the shared memory object "
                f"'{key}' ({exc.strerror})"
            ) from None

    def status(self, name: str = "") -> list[RegionStatus]:
        if not name:
            return [region.status for region in self._regions.values()]
        return [self._region(name).status]

    def unregister(self, name: str = "") -> None:
        """One region, or every region when `name` is empty; an unknown name is no error."""
        for known in [name] if name else list(self._regions):
            region = self._regions.pop(known, None)
            if region is not None:
                with contextlib.suppress(BufferError):  # a view still out: freed with it
                    region.mapping.close()
                os.close(region.fd)

    def close(self) -> None:
        self.unregister()

    def mirror(self, regions: list[RegionStatus]) -> None:
        """Hold exactly `regions` (a split server's engine's list): map the new ones, release
        those gone or changed. One that cannot be mapped here is left out and logged."""
        wanted = {region.name: region for region in regions}
        for name, region in list(self._regions.items()):
            if wanted.get(name) != region.status:
                self.unregister(name)
        for name, status in wanted.items():
            if name not in self._regions:
                try:
                    self.register(*astuple(status))
                except ServingError as exc:
                    log.warning("shared memory region '%s' not mapped here: %s", name, exc.message)

    def _region(self, name: str) -> _Region:
        region = self._regions.get(name)
        if region is None:
            raise RegionNotFound(f"shared memory region '{name}' is not registered")
        return region

    def _span(self, tensor: str, name: str, offset: int, byte_size: int) -> tuple[_Region, int]:
        """The region and where in its mapping the tensor's bytes start, checked."""
        region = self._region(name)
        size = region.status.byte_size
        if offset < 0 or byte_size < 0 or offset + byte_size > size:
            raise InvalidInput(
                f"{tensor}: offset {offset} + byte_size {byte_size} is outside shared memory "
                f"region '{name}' of {size} bytes"
            )
        start = region.status.offset + offset
        if os.fstat(region.fd).st_size < start + byte_size:
            raise InvalidInput(
                f"{tensor}: shared memory region '{name}' was cut short since it was registered"
            )
        return region, start

    def read(self, tensor: str, name: str, offset: int, byte_size: int) -> bytes:
        """A copy of the tensor's bytes (the client may write the region again at once)."""
        region, start = self._span(tensor, name, offset, byte_size)
        return region.mapping[start : start + byte_size]

    def write(self, tensor: str, name: str, offset: int, byte_size: int, data: bytes) -> None:
        if len(data) > byte_size:
            raise InvalidInput(
                f"{tensor}: its {len(data)} bytes do not fit the {byte_size} bytes given for it "
                f"in shared memory region '{name}'"
            )
        region, start = self._span(tensor, name, offset, byte_size)
        region.mapping[start : start + len(data)] = data


class RegionRegistry(Protocol):
    """Registering, listing and releasing regions: here, or through a split server's engine
    so that every front end maps them."""

    async def register(self, name: str, key: str, offset: int, byte_size: int) -> None: ...

    async def unregister(self, name: str = "") -> None: ...

    def status(self, name: str = "") -> list[RegionStatus]: ...


class LocalRegions:
    """The regions of this process."""

    def __init__(self, memory: SharedMemory) -> None:
        self._memory = memory

    async def register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        self._memory.register(name, key, offset, byte_size)

    async def unregister(self, name: str = "") -> None:
        self._memory.unregister(name)

    def status(self, name: str = "") -> list[RegionStatus]:
        return self._memory.status(name)
