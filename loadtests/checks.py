"""Each answer checked against its own request: a wrong answer is a failure with a message."""

from __future__ import annotations

from collections import Counter

import numpy as np

from deepserve import Classification, Detection, Segmentation

from .payloads import Payload


class WrongAnswer(Exception):
    """The server answered, but not what this request should get."""


def check_classification(payload: Payload, result: Classification) -> None:
    if not result.labels:
        raise WrongAnswer(f"{payload.name}: empty classification")
    if payload.digits is not None and result.label != str(payload.digits[0]):
        raise WrongAnswer(f"{payload.name}: expected {payload.digits[0]}, got {result}")


def check_logits(payload: Payload, logits, classes: int = 10) -> None:
    if logits.shape != (1, classes):
        raise WrongAnswer(f"{payload.name}: logits shape {logits.shape}, expected (1, {classes})")
    if payload.digits is not None and int(logits.argmax()) != payload.digits[0]:
        raise WrongAnswer(
            f"{payload.name}: expected {payload.digits[0]}, logits say {int(logits.argmax())}"
        )


def check_detections(payload: Payload, found: list[Detection]) -> None:
    height, width = payload.pixels.shape[:2]
    for d in found:
        b = d.box
        if not (0 <= b.x1 <= b.x2 <= width and 0 <= b.y1 <= b.y2 <= height):
            raise WrongAnswer(f"{payload.name}: box {b.as_tuple()} outside {width}x{height}")
    if payload.digits is not None:
        got = Counter(int(d.label) for d in found)
        if got != Counter(payload.digits):
            raise WrongAnswer(
                f"{payload.name}: expected digits {sorted(payload.digits)}, "
                f"found {sorted(got.elements())}"
            )


def check_segmentation(payload: Payload, result: Segmentation) -> None:
    if result.mask.shape != payload.pixels.shape[:2]:
        raise WrongAnswer(
            f"{payload.name}: mask {result.mask.shape}, image {payload.pixels.shape[:2]}"
        )
    if payload.digits is not None:
        # A class counts as present when it covers a digit-sized area, not a few stray pixels.
        counts = np.bincount(result.mask.ravel(), minlength=len(result.labels))
        floor = max(30, result.mask.size * 3e-4)
        present = {result.labels[i] for i in np.flatnonzero(counts >= floor)} - {"background"}
        expected = {str(d) for d in payload.digits}
        if present != expected:
            raise WrongAnswer(
                f"{payload.name}: expected digits {sorted(expected)}, mask has {sorted(present)}"
            )
