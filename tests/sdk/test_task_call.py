"""The SDK's one task call, in process: the request each typed method sends, and clear errors
for options and tasks it cannot send."""

from __future__ import annotations

import numpy as np
import pytest

from deepserve import _calls
from deepserve.errors import DeepserveError
from deepserve.v1 import vision_pb2 as vpb

DIGIT = np.zeros((28, 28, 1), np.uint8)


def test_each_task_builds_its_own_request() -> None:
    call = _calls.task("classify", DIGIT, "mnist", "2", {"top_k": 3})
    assert (call.method, call.task, call.request.model, call.request.model_version) == (
        "Classify", "classification", "mnist", "2"
    )  # fmt: skip
    assert call.request.top_k == 3 and len(call.request.images) == 1
    detect = _calls.task("detect", [DIGIT, DIGIT], None, "", {"score_threshold": None})
    assert not detect.request.HasField("score_threshold") and len(detect.request.images) == 2
    segment = _calls.task(
        "segment", DIGIT, "seg", "", {"mask_encoding": _calls.mask_encoding(True)}
    )
    assert segment.request.mask_encoding == vpb.MASK_ENCODING_PNG


def test_a_batch_answers_a_list_and_one_image_one_result() -> None:
    response = vpb.ClassifyResponse(
        results=[vpb.Classification(labels=[vpb.Label(label="7", index=7, score=1.0)])] * 2
    )
    one = _calls.task("classify", DIGIT, "mnist", "", {})
    many = _calls.task("classify", [DIGIT, DIGIT], "mnist", "", {})
    assert one.parse(response).label == "7"
    assert [r.label for r in many.parse(response)] == ["7", "7"]


def test_options_and_tasks_it_cannot_send_are_named() -> None:
    with pytest.raises(DeepserveError, match="classify: option 'colour'"):
        _calls.task("classify", DIGIT, "mnist", "", {"colour": "red"})
    with pytest.raises(DeepserveError, match="detect: option 'max_detections'"):
        _calls.task("detect", DIGIT, "ssd", "", {"max_detections": "many"})
    with pytest.raises(DeepserveError, match="unknown task 'embed'"):
        _calls.task("embed", DIGIT, "words", "", {})
