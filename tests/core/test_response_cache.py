"""The response cache in-process: keys that tell requests apart, answers kept as read-only
copies, the byte bound with the least recently used dropped first, and a reloaded version
never served another's answers."""

from __future__ import annotations

import weakref

import numpy as np
import pytest

from deepserve.server.core.response_cache import ENTRY_OVERHEAD_BYTES, ResponseCache


class Owner:
    """Stands for a version's scheduler (the cache holds it weakly)."""


def _key(feeds: dict[str, np.ndarray], outputs: tuple[str, ...] = ("y",), version: int = 1):
    return ResponseCache.key("m", version, feeds, outputs)


def test_keys_differ_with_anything_that_changes_the_answer() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    base = _key({"x": x})
    assert base == _key({"x": x.copy()})  # the same bytes, another array
    assert base == _key({"x": np.asfortranarray(x)})  # the same values, another layout
    different = [
        _key({"x": x + 1}),  # other bytes
        _key({"x": x.reshape(3, 2)}),  # other shape, same bytes
        _key({"x": x.view(np.int32)}),  # other datatype, same bytes
        _key({"z": x}),  # other input name
        _key({"x": x}, ("y", "z")),  # other outputs asked for
        _key({"x": x}, version=2),
        ResponseCache.key("other", 1, {"x": x}, ("y",)),
    ]
    assert len({base, *different}) == len(different) + 1
    strings = np.array([b"ab", b"c"], dtype=object)
    assert _key({"t": strings}) != _key({"t": np.array([b"a", b"bc"], dtype=object)})


def test_an_answer_is_kept_as_a_read_only_copy_for_its_owner_only() -> None:
    cache, owner = ResponseCache(1 << 20), Owner()
    batch = np.arange(8, dtype=np.float32).reshape(4, 2)
    key = _key({"x": batch[:1]})
    cache.put(key, owner, {"y": batch[:1]})  # a view of a batch's buffer
    batch[:] = -1  # the batch's buffer is used again
    kept = cache.get(key, owner)
    assert kept is not None
    np.testing.assert_array_equal(kept["y"], [[0, 1]])
    with pytest.raises(ValueError, match="read-only"):
        kept["y"][0, 0] = 5
    assert cache.get(key, Owner()) is None  # a reloaded version has a new scheduler
    assert cache.get(_key({"x": batch[1:2]}), owner) is None


def test_the_least_recently_used_go_first_and_the_bytes_stay_within_the_size() -> None:
    answer_bytes = 1000 * 4 + ENTRY_OVERHEAD_BYTES
    cache, owner = ResponseCache(3 * answer_bytes), Owner()
    keys = [_key({"x": np.full((1, 1), i, np.float32)}) for i in range(4)]
    for key in keys[:3]:
        cache.put(key, owner, {"y": np.zeros(1000, np.float32)})
    assert cache.get(keys[0], owner) is not None  # now the most recently used
    cache.put(keys[3], owner, {"y": np.zeros(1000, np.float32)})
    assert [cache.get(k, owner) is not None for k in keys] == [True, False, True, True]
    assert cache.bytes == 3 * answer_bytes and len(cache) == 3
    cache.put(_key({"x": np.ones(1)}), owner, {"y": np.zeros(10_000, np.float32)})
    assert len(cache) == 3  # larger than the whole cache: not kept, nothing pushed out


def test_an_unloaded_version_is_not_kept_alive_by_its_answers() -> None:
    cache, owner = ResponseCache(1 << 20), Owner()
    key = _key({"x": np.ones((1, 2), np.float32)})
    cache.put(key, owner, {"y": np.ones((1, 2), np.float32)})
    gone = weakref.ref(owner)
    del owner
    assert gone() is None
    assert cache.get(key, Owner()) is None and cache.bytes == 0 and len(cache) == 0
