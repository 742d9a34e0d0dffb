"""Classification post-processing: logits (or probabilities) -> top-k labelled scores."""

from __future__ import annotations

import numpy as np

from ..v1 import vision_pb2 as vpb


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def classifications(
    scores: np.ndarray, labels: list[str], top_k: int, are_logits: bool
) -> list[vpb.Classification]:
    """scores [N, classes] -> per image the top_k labels, best first (ties: lower index)."""
    flat = scores.reshape(scores.shape[0], -1).astype(np.float64)
    probabilities = softmax(flat) if are_logits else flat
    k = max(1, min(top_k, probabilities.shape[1]))
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    results = []
    for row, indices in zip(probabilities, order, strict=True):
        results.append(
            vpb.Classification(
                labels=[
                    vpb.Label(
                        label=labels[i] if i < len(labels) else str(i),
                        index=int(i),
                        score=float(row[i]),
                    )
                    for i in indices
                ]
            )
        )
    return results
