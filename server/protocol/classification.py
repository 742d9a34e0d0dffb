"""The Open Inference Protocol's classification extension: top-k `score:index[:label]` strings."""

from __future__ import annotations

import numpy as np

from .errors import InvalidInput


def _entry(score: float, index: int, labels: list[str] | None) -> str:
    if labels is not None and index < len(labels):
        return f"{score:f}:{index}:{labels[index]}"
    return f"{score:f}:{index}"


def top_k(
    output: np.ndarray, k: int, batching: bool, labels: list[str] | None, name: str
) -> np.ndarray:
    """Replace an output with its k highest entries as BYTES, per batch item when batching.

    Each item's non-batch part must be one-dimensional in effect (all dims 1 but one).
    """
    if output.dtype.kind not in "biuf":
        raise InvalidInput(
            f"output '{name}': classification needs a numeric output, got {output.dtype}"
        )
    items = output if batching else output[np.newaxis, ...]
    per_item = items.shape[1:]
    if sum(1 for d in per_item if d != 1) > 1:
        raise InvalidInput(
            f"output '{name}': classification needs one class dimension, output shape is "
            f"{list(output.shape)}"
        )
    flat = items.reshape(items.shape[0], -1)
    k = min(k, flat.shape[1])
    # Stable sort on the negated scores: ties keep the lower class index first.
    order = np.argsort(-flat.astype(np.float64), axis=1, kind="stable")[:, :k]
    result = np.empty((flat.shape[0], k), dtype=object)
    for row, indices in enumerate(order):
        result[row] = [_entry(float(flat[row, i]), int(i), labels) for i in indices]
    return result if batching else result[0]
