"""The read_number pipeline's glue graphs in ONNX Runtime, in process: digit_crops keeps the
digits (not covered duplicates, not weak boxes) and cuts them out so the bundled MNIST
classifier reads them; number_order writes the number left to right whatever order the
digits came in; hostile boxes (NaN, huge, too few) cost nothing and fail nothing; shapes that
disagree are the caller's error, said without ONNX Runtime's source paths."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from deepserve.server.protocol.errors import InvalidInput
from deepserve.server.runtime import ort_errors
from deepserve.training.number_graphs import MAX_DIGITS, SCORE_MIN, crops_graph, order_graph
from deepserve.training.number_scenes import make_number_scenes

from ..mnist_sample import digits

MNIST = Path(__file__).resolve().parents[2] / "models" / "mnist" / "1" / "model.onnx"
DETECTIONS = 100


@pytest.fixture(scope="module")
def crops() -> ort.InferenceSession:
    return ort.InferenceSession(crops_graph().SerializeToString())


@pytest.fixture(scope="module")
def order() -> ort.InferenceSession:
    return ort.InferenceSession(order_graph().SerializeToString())


def _detections(boxes: list[np.ndarray], scores: list[np.ndarray]):
    padded = np.zeros((len(boxes), DETECTIONS, 4), np.float32)
    padded_scores = np.zeros((len(boxes), DETECTIONS), np.float32)
    for row, (b, s) in enumerate(zip(boxes, scores, strict=True)):
        padded[row, : len(b)], padded_scores[row, : len(s)] = b, s
    return padded, padded_scores


def test_crops_keep_the_digits_and_mnist_reads_them(
    crops: ort.InferenceSession, order: ort.InferenceSession
) -> None:
    images, labels = digits()
    scenes = make_number_scenes(images, labels, 24, seed=5)
    rng = np.random.default_rng(0)
    boxes, scores = [], []
    for scene in scenes:
        shuffled = rng.permutation(len(scene.boxes))
        found = scene.boxes[shuffled]
        confidence = rng.uniform(0.6, 0.99, len(found)).astype(np.float32)
        # A duplicate of the first digit (as a per-class NMS leaves one for another class),
        # scoring lower, and a weak box elsewhere: neither is a digit.
        found = np.concatenate([found, found[:1] + 1, [[5, 5, 40, 40]]]).astype(np.float32)
        weak = SCORE_MIN / 2
        confidence = np.concatenate([confidence, [confidence[0] - 0.1, weak]]).astype(np.float32)
        boxes.append(found)
        scores.append(confidence)
    detected, detected_scores = _detections(boxes, scores)
    pictures = np.stack([s.image for s in scenes])
    cut, kept, kept_scores = crops.run(
        None, {"image": pictures, "boxes": detected, "scores": detected_scores}
    )
    digit_count = sum(len(s.text) for s in scenes)
    assert cut.shape == (digit_count, 28, 28, 1) and cut.dtype == np.uint8  # a crop a digit
    for scene, row_boxes, row_scores in zip(scenes, kept, kept_scores, strict=True):
        n = len(scene.text)
        assert (row_scores > 0).sum() == n  # the duplicate and the weak box are gone
        assert not row_boxes[n:].any() and not row_scores[n:].any()
        ours = sorted(map(tuple, row_boxes[:n].tolist()))
        assert ours == sorted(map(tuple, scene.boxes.tolist()))
    # The crops look like MNIST: white ink on black whatever the scene's colours.
    for digit in cut[..., 0]:
        assert digit[:3].max() == 0 and digit[-3:].max() == 0  # margin above and below
        assert digit.max() == 255 and 0.05 < (digit > 127).mean() < 0.5
    (logits,) = ort.InferenceSession(str(MNIST)).run(None, {"image": cut})
    number, digit_ids, ordered, confidences, count = order.run(
        None, {"logits": logits, "digit_boxes": kept, "digit_scores": kept_scores}
    )
    read = list(number)
    right = sum(r == s.text for r, s in zip(read, scenes, strict=True))
    print(f"{right} of {len(scenes)} numbers read right from their true boxes: {read}")
    assert right >= len(scenes) * 0.8
    for scene, row_boxes, row_digits, n in zip(scenes, ordered, digit_ids, count, strict=True):
        assert n == len(scene.text)
        np.testing.assert_array_equal(row_boxes[:n], scene.boxes)  # left to right
        assert (row_digits[n:] == -1).all()
    assert ((confidences >= 0) & (confidences <= 1)).all()


def test_order_writes_the_number_left_to_right(order: ort.InferenceSession) -> None:
    # Digits found in the order 1, 7, 4, 0; their boxes put them 7, 4, 0, 1 left to right.
    lefts = {7: 10.0, 0: 40.0, 4: 25.0, 1: 60.0}
    found = [1, 7, 4, 0]
    boxes = np.zeros((2, MAX_DIGITS, 4), np.float32)
    scores = np.zeros((2, MAX_DIGITS), np.float32)
    logits = np.full((2 * MAX_DIGITS, 10), -5.0, np.float32)
    for slot, digit in enumerate(found):
        boxes[0, slot] = [lefts[digit], 5, lefts[digit] + 10, 30]
        scores[0, slot] = 0.9
        logits[slot, digit] = 5.0
    number, digit_ids, ordered, _, count = order.run(
        None, {"logits": logits, "digit_boxes": boxes, "digit_scores": scores}
    )
    assert list(number) == ["7401", ""]
    assert digit_ids[0].tolist() == [7, 4, 0, 1, -1, -1, -1, -1]
    assert ordered[0, :4, 0].tolist() == [10.0, 25.0, 40.0, 60.0]
    assert count.tolist() == [4, 0]


def test_hostile_boxes_cost_nothing_and_fail_nothing(crops: ort.InferenceSession) -> None:
    image = np.zeros((1, 320, 320, 3), np.uint8)
    cases = {
        "huge": np.full((1, DETECTIONS, 4), 1e30, np.float32) * [[[0, 0, 1, 1]]],
        "nan": np.full((1, DETECTIONS, 4), np.nan, np.float32),
        "negative": np.full((1, DETECTIONS, 4), -1e30, np.float32),
        "none": np.zeros((1, 0, 4), np.float32),
        "fewer than K": np.tile(np.float32([[[10, 10, 60, 60]]]), (1, 3, 1)),
    }
    for name, boxes in cases.items():
        scores = np.full(boxes.shape[:2], 0.9, np.float32)
        started = time.perf_counter()
        cut, kept, _ = crops.run(
            None, {"image": image, "boxes": boxes.astype(np.float32), "scores": scores}
        )
        seconds = time.perf_counter() - started
        assert seconds < 0.5, (name, seconds)
        assert cut.shape[1:] == (28, 28, 1) and 1 <= len(cut) <= MAX_DIGITS, name
        assert np.isfinite(kept).all() and (kept >= 0).all() and (kept <= 320).all(), name


def test_a_picture_without_digits_gives_one_blank_crop_and_no_number(
    crops: ort.InferenceSession, order: ort.InferenceSession
) -> None:
    image = np.full((2, 320, 320, 3), 90, np.uint8)
    boxes, scores = _detections([np.zeros((0, 4))] * 2, [np.zeros(0)] * 2)
    cut, kept, kept_scores = crops.run(None, {"image": image, "boxes": boxes, "scores": scores})
    assert cut.shape == (1, 28, 28, 1) and not kept_scores.any()
    logits = np.zeros((1, 10), np.float32)
    number, digit_ids, _, _, count = order.run(
        None, {"logits": logits, "digit_boxes": kept, "digit_scores": kept_scores}
    )
    assert list(number) == ["", ""] and count.tolist() == [0, 0] and (digit_ids == -1).all()


def test_shapes_that_disagree_are_the_callers_error(order: ort.InferenceSession) -> None:
    feeds = {
        "logits": np.zeros((3, 10), np.float32),  # three rows for five digits
        "digit_boxes": np.zeros((1, MAX_DIGITS, 4), np.float32),
        "digit_scores": np.float32([[0.9] * 5 + [0] * 3]),
    }
    with pytest.raises(Exception) as raised:
        order.run(None, feeds)
    error = ort_errors.translate(raised.value)
    assert isinstance(error, InvalidInput), error
    assert "out of" in str(error), str(error)
    assert "onnxruntime_src" not in str(error) and "::" not in str(error), str(error)
    feeds["digit_scores"] = np.zeros((1, MAX_DIGITS - 1), np.float32)  # K - 1 slots for K boxes
    with pytest.raises(Exception) as raised:
        order.run(None, feeds)
    error = ort_errors.translate(raised.value)
    assert isinstance(error, InvalidInput), error
    assert "onnxruntime_src" not in str(error) and "::" not in str(error), str(error)
