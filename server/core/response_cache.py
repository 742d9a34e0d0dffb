"""Triton's local response cache: a model whose config says `response_cache { enable: true }`
gets, for a request seen before, the answer kept from the first time instead of a run. Kept
answers are keyed by the model version and the request's inputs (names, datatypes, shapes and
bytes) and the outputs asked for, and bounded by bytes: the least recently used go first. The
server sets the size (`--response-cache-mb`); 0, the default, keeps nothing."""

from __future__ import annotations

import hashlib
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ENTRY_OVERHEAD_BYTES = 256
"""What an answer costs beyond its arrays' bytes (key, dictionary, array headers), counted
against the size so that many tiny answers cannot outgrow it."""


@dataclass
class _Entry:
    owner: weakref.ref
    """The version's scheduler that computed it: a reloaded version's is a new one, so its
    answers are never served for the new weights (and an unloaded one is not kept alive)."""
    outputs: dict[str, np.ndarray]
    size: int


def _array_bytes(array: np.ndarray) -> int:
    if array.dtype == object:  # BYTES tensors: the strings themselves, and a pointer each
        return sum(len(item) + 8 for item in array.flat)
    return array.nbytes


def _frozen_copy(array: np.ndarray) -> np.ndarray:
    """Its own copy (an output may be a view of a whole batch's buffer), read-only: every
    answer served from it shares it."""
    kept = np.array(array, copy=True)
    kept.setflags(write=False)
    return kept


class ResponseCache:
    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self.bytes = 0
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def key(
        name: str, version: int, feeds: dict[str, np.ndarray], output_names: Sequence[str]
    ) -> bytes:
        digest = hashlib.blake2b(digest_size=32)
        digest.update(f"{name}\0{version}\0{len(output_names)}".encode())
        for output in output_names:
            digest.update(f"\0{output}".encode())
        for input_name in sorted(feeds):
            array = feeds[input_name]
            digest.update(f"\0{input_name}\0{array.dtype.str}\0{array.shape}\0".encode())
            if array.dtype == object:
                for item in array.flat:
                    data = item if isinstance(item, bytes) else str(item).encode()
                    digest.update(len(data).to_bytes(8, "little"))
                    digest.update(data)
            else:
                digest.update(np.ascontiguousarray(array).data)
        return digest.digest()

    def get(self, key: bytes, owner: object) -> dict[str, np.ndarray] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        computed_by = entry.owner()
        if computed_by is None:  # its version is gone: its answers with it
            del self._entries[key]
            self.bytes -= entry.size
            return None
        if computed_by is not owner:
            return None
        self._entries.move_to_end(key)
        return entry.outputs

    def put(self, key: bytes, owner: object, outputs: dict[str, np.ndarray]) -> None:
        size = ENTRY_OVERHEAD_BYTES + sum(_array_bytes(a) for a in outputs.values())
        if size > self.capacity_bytes:
            return  # it would push out everything else and still not fit
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old.size
        while self.bytes + size > self.capacity_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.bytes -= evicted.size
        kept = {name: _frozen_copy(array) for name, array in outputs.items()}
        self._entries[key] = _Entry(weakref.ref(owner), kept, size)
        self.bytes += size
