"""System shared memory regions in-process: what may be registered (a plain shared memory
object of this user, inside its bounds), reads and writes checked against the region, and a
file cut short after registering refused instead of crashing the process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deepserve.server.core.shared_memory import RegionNotFound, RegionStatus, SharedMemory
from deepserve.server.protocol.errors import AlreadyExists, InvalidInput, ServerBusy


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    (tmp_path / "data").write_bytes(bytes(range(256)) * 4)  # 1,024 bytes
    return tmp_path


def test_a_region_reads_and_writes_within_its_bounds(root: Path) -> None:
    regions = SharedMemory(root)
    regions.register("in", "/data", 256, 512)
    assert regions.status() == [RegionStatus("in", "/data", 256, 512)]
    assert regions.read("input 'x'", "in", 4, 3) == bytes([4, 5, 6])  # relative to the region
    regions.write("output 'y'", "in", 0, 8, b"\xff\xfe")
    assert (root / "data").read_bytes()[256:259] == b"\xff\xfe\x02"
    with pytest.raises(InvalidInput, match=r"input 'x': offset 500 \+ byte_size 13 is outside"):
        regions.read("input 'x'", "in", 500, 13)
    with pytest.raises(InvalidInput, match="output 'y': its 9 bytes do not fit the 8 bytes"):
        regions.write("output 'y'", "in", 0, 8, bytes(9))
    with pytest.raises(RegionNotFound, match="'out' is not registered"):
        regions.read("input 'x'", "out", 0, 1)
    with pytest.raises(AlreadyExists, match="'in' is already registered"):
        regions.register("in", "/data", 0, 8)
    regions.unregister("in")
    regions.unregister("in")  # unknown: nothing to do, as in Triton
    assert regions.status() == []


@pytest.mark.parametrize(
    ("key", "offset", "size", "problem"),
    [
        ("../data", 0, 8, "expected the name of a POSIX shared memory object"),
        ("/a/b", 0, 8, "expected the name of a POSIX shared memory object"),
        ("/..", 0, 8, "expected the name of a POSIX shared memory object"),
        ("/missing", 0, 8, r"cannot open the shared memory object '/missing' \(No such file"),
        ("/link", 0, 8, "cannot open the shared memory object '/link'"),
        ("/folder", 0, 8, "cannot open the shared memory object '/folder'"),
        ("/data", 1000, 100, r"offset 1000 \+ byte_size 100 is past the end of '/data'"),
        ("/data", -1, 8, "offset must be >= 0 and byte_size > 0"),
        ("/data", 0, 0, "offset must be >= 0 and byte_size > 0"),
    ],
)
def test_what_cannot_be_a_region_is_refused(
    root: Path, key: str, offset: int, size: int, problem: str
) -> None:
    (root / "link").symlink_to(root / "data")  # a link could lead anywhere: never followed
    (root / "folder").mkdir()
    with pytest.raises(InvalidInput, match=problem):
        SharedMemory(root).register("r", key, offset, size)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file of another user needs root")
def test_another_users_memory_is_refused(root: Path) -> None:
    os.chown(root / "data", 12345, 12345)
    with pytest.raises(InvalidInput, match="not a shared memory object of this server's user"):
        SharedMemory(root).register("r", "/data", 0, 8)


def test_a_region_cut_short_is_refused_not_read_past_its_end(root: Path) -> None:
    regions = SharedMemory(root)
    regions.register("r", "data", 0, 1024)
    os.truncate(root / "data", 100)
    with pytest.raises(InvalidInput, match="'r' was cut short since it was registered"):
        regions.read("input 'x'", "r", 0, 512)
    assert regions.read("input 'x'", "r", 0, 4) == bytes(range(4))  # what is left still reads
    regions.close()


def test_regions_are_bounded_in_number(root: Path) -> None:
    regions = SharedMemory(root, max_regions=2)
    regions.register("a", "/data", 0, 8)
    regions.register("b", "/data", 8, 8)
    with pytest.raises(ServerBusy, match="2 shared memory regions are registered"):
        regions.register("c", "/data", 16, 8)
    regions.unregister()
    regions.register("c", "/data", 16, 8)
