"""Classification: logits (or probabilities) -> the top-k labelled scores of each image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Task
from .results import Classification, Label


@dataclass(frozen=True)
class ClassifyOptions:
    top_k: int = 1


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


class ClassifyTask(Task):
    name = "classification"

    def finish(
        self, outputs: dict[str, np.ndarray], sizes: list[tuple[int, int]], options: ClassifyOptions
    ) -> list[Classification]:
        scores = outputs[self.output_names[0]]
        flat = scores.reshape(scores.shape[0], -1).astype(np.float64)
        are_logits = self.parameters.get("output_kind", "logits") == "logits"
        probabilities = softmax(flat) if are_logits else flat
        k = max(1, min(options.top_k, probabilities.shape[1]))
        # Ties keep the lower class index first.
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
        labels = self.labels
        return [
            Classification(
                [
                    Label(labels[i] if i < len(labels) else str(i), int(i), float(row[i]))
                    for i in indices
                ]
            )
            for row, indices in zip(probabilities, order, strict=True)
        ]
