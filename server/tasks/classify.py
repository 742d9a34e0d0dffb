"""Classification: logits (or probabilities) -> the top-k labelled scores of each image."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...v1 import vision_pb2 as vpb
from .base import QueryParameter, Task
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
    verb = "classify"
    rpc = "Classify"
    query = (QueryParameter("top_k", int, "labels per image, best first (default 1)"),)

    @classmethod
    def options_from_query(cls, values: dict[str, Any], response_budget: int) -> ClassifyOptions:
        return ClassifyOptions(values["top_k"] if values["top_k"] is not None else 1)

    @classmethod
    def options_from_message(cls, request: Any, response_budget: int) -> ClassifyOptions:
        return ClassifyOptions(request.top_k if request.HasField("top_k") else 1)

    @classmethod
    def response_message(
        cls, model: str, version: str, results: list[Classification], options: ClassifyOptions
    ) -> vpb.ClassifyResponse:
        return vpb.ClassifyResponse(
            model=model,
            model_version=version,
            results=[
                vpb.Classification(
                    labels=[
                        vpb.Label(label=x.label, index=x.index, score=x.score) for x in r.labels
                    ]
                )
                for r in results
            ],
        )

    @classmethod
    def results_json(
        cls, results: list[Classification], options: ClassifyOptions
    ) -> list[dict[str, Any]]:
        return [
            {"labels": [{"label": x.label, "index": x.index, "score": x.score} for x in r.labels]}
            for r in results
        ]

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
