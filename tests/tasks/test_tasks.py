"""Each Vision task in process: its options from a query or a message, its post-processing,
and its two encoders agreeing with each other (no model, no server)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from deepserve.server.http.openapi import spec
from deepserve.server.protocol.errors import InvalidInput, LimitExceeded, TaskNotSupported
from deepserve.server.tasks import TASKS, for_model
from deepserve.server.tasks.base import parse_query
from deepserve.server.tasks.classify import ClassifyOptions, ClassifyTask
from deepserve.server.tasks.detect import DetectOptions, DetectTask
from deepserve.server.tasks.read import ReadOptions, ReadTask
from deepserve.server.tasks.results import Box
from deepserve.server.tasks.segment import SegmentTask
from deepserve.v1 import vision_pb2 as vpb

IMAGE = {"image_height": "28", "image_width": "28", "image_channels": "1"}


def test_every_task_is_an_rpc_a_route_and_documented() -> None:
    methods = vpb.DESCRIPTOR.services_by_name["Vision"].methods_by_name
    paths = spec()["paths"]
    assert list(TASKS) == ["classification", "detection", "read", "segmentation"]
    for task in TASKS.values():
        assert task.rpc in methods, task.rpc
        assert methods[task.rpc].input_type.name == f"{task.rpc}Request"
        assert f"/v1/models/{{model}}/{task.verb}" in paths
        documented = {p["name"] for p in paths[f"/v1/models/{{model}}/{task.verb}"]["post"]
                      ["parameters"] if p["in"] == "query"}  # fmt: skip
        assert documented == {p.name for p in task.query}


def test_query_parameters_are_checked_with_their_names() -> None:
    assert parse_query({"top_k": "3"}, ClassifyTask.query) == {"top_k": 3}
    assert parse_query({}, DetectTask.query) == {"score_threshold": None, "max_detections": None}
    with pytest.raises(InvalidInput, match="'top_k' must be a int, got 'many'"):
        parse_query({"top_k": "many"}, ClassifyTask.query)
    with pytest.raises(InvalidInput, match="'score_threshold' must not be negative"):
        parse_query({"score_threshold": "-0.5"}, DetectTask.query)
    with pytest.raises(InvalidInput, match=r"'mask' must be one of \('png', 'rle', 'raw'\)"):
        parse_query({"mask": "jpeg"}, SegmentTask.query)


def test_options_from_either_transport_are_the_same() -> None:
    from_query = ClassifyTask.options_from_query({"top_k": 2}, 100)
    from_message = ClassifyTask.options_from_message(vpb.ClassifyRequest(top_k=2), 100)
    assert from_query == from_message == ClassifyOptions(2)
    assert ClassifyTask.options_from_message(vpb.ClassifyRequest(), 100) == ClassifyOptions(1)
    detect = DetectTask.options_from_message(vpb.DetectRequest(max_detections=4), 100)
    assert detect == DetectOptions(None, 4)
    png = SegmentTask.options_from_message(
        vpb.SegmentRequest(mask_encoding=vpb.MASK_ENCODING_PNG), 100
    )
    assert (png.raw, png.encoding) == (False, "png")
    assert SegmentTask.options_from_query({"mask": None}, 100).encoding == "png"


def test_classification_top_k_in_both_encodings() -> None:
    task = for_model("digits", {"task": "classification", **IMAGE}, ["image"], ["logits"],
                     {"logits": [f"d{i}" for i in range(10)]})  # fmt: skip
    assert isinstance(task, ClassifyTask)
    logits = np.zeros((2, 10), np.float32)
    logits[0, 7], logits[1, 3] = 9.0, 5.0
    results = task.finish({"logits": logits}, [(28, 28)] * 2, ClassifyOptions(2))
    assert [r.labels[0].label for r in results] == ["d7", "d3"]
    message = ClassifyTask.response_message("digits", "1", results, ClassifyOptions(2))
    as_json = ClassifyTask.results_json(results, ClassifyOptions(2))
    assert [[x.index for x in r.labels] for r in message.results] == [
        [x["index"] for x in r["labels"]] for r in as_json
    ]
    assert len(as_json[0]["labels"]) == 2


def test_detection_boxes_come_back_in_the_images_own_pixels() -> None:
    parameters = {"task": "detection", "image_height": "100", "image_width": "200",
                  "image_channels": "3", "score_threshold": "0.5"}  # fmt: skip
    outputs = ["boxes", "scores", "classes", "count"]
    task = for_model("ssd", parameters, ["image"], outputs, {"classes": list("0123456789")})
    assert isinstance(task, DetectTask)
    boxes = np.array([[[10, 10, 50, 30], [0, 0, 5, 5]]], np.float32)
    scores = np.array([[0.9, 0.2]], np.float32)
    found = task.finish(
        {"boxes": boxes, "scores": scores, "classes": np.array([[4, 1]]), "count": np.array([2])},
        [(200, 400)],
        DetectOptions(),
    )
    (result,) = found
    assert [(d.label, d.box.x1, d.box.y2) for d in result.detections] == [("4", 20.0, 60.0)]
    message = DetectTask.response_message("ssd", "1", found, DetectOptions())
    as_json = DetectTask.results_json(found, DetectOptions())
    assert message.results[0].detections[0].box.x2 == as_json[0]["detections"][0]["box"]["x2"]


def test_reading_gives_text_and_boxes_in_the_images_own_pixels() -> None:
    parameters = {"task": "read", "image_height": "100", "image_width": "200",
                  "image_channels": "3"}  # fmt: skip
    outputs = ["number", "digits", "boxes", "confidences", "count"]
    task = for_model("read_number", parameters, ["image"], outputs, {})
    assert isinstance(task, ReadTask)
    boxes = np.zeros((2, 8, 4), np.float32)
    boxes[0, :2] = [[10, 10, 20, 30], [30, 10, 40, 30]]
    confidences = np.zeros((2, 8), np.float32)
    confidences[0, :2] = [0.9, 0.8]
    readings = task.finish(
        {
            "number": np.array([b"41", b"\xff"], object),  # the second not UTF-8: replaced
            "boxes": boxes,
            "confidences": confidences,
            "count": np.array([2, 0]),
        },
        [(200, 400), (100, 200)],
        ReadOptions(),
    )
    first, second = readings
    assert first.text == "41" and [c.text for c in first.characters] == ["4", "1"]
    assert first.characters[1].box == Box(60.0, 20.0, 80.0, 60.0)
    assert first.characters[0].score == pytest.approx(0.9)
    assert second.text == "\ufffd" and second.characters == []
    message = ReadTask.response_message("read_number", "1", readings, ReadOptions())
    as_json = ReadTask.results_json(readings, ReadOptions())
    assert message.results[0].text == as_json[0]["text"] == "41"
    assert message.results[0].characters[1].box.x2 == as_json[0]["characters"][1]["box"]["x2"]
    with pytest.raises(TaskNotSupported, match="lacks outputs"):
        raise for_model("read_number", parameters, ["image"], ["number"], {})


def test_masks_in_every_encoding_and_the_size_limit() -> None:
    parameters = {"task": "segmentation", "image_height": "4", "image_width": "4",
                  "image_channels": "3"}  # fmt: skip
    task = for_model("seg", parameters, ["image"], ["mask"], {"mask": ["bg", "one"]})
    mask = np.zeros((1, 4, 4), np.uint8)
    mask[0, 1:3, 1:3] = 1
    (result,) = task.finish({"mask": mask}, [(8, 8)], SegmentTask.options_from_query(
        {"mask": "raw"}, 1 << 20))  # fmt: skip
    assert result.mask.shape == (8, 8)
    for encoding in ("png", "rle", "raw"):
        options = SegmentTask.options_from_query({"mask": encoding}, 1 << 20)
        (entry,) = SegmentTask.results_json([result], options)
        if encoding == "rle":
            runs = entry["counts"]
            decoded = np.concatenate([np.full(n, c, np.uint8) for c, n in runs]).reshape(8, 8)
        elif encoding == "png":
            png = base64.b64decode(entry["mask"])
            decoded = np.asarray(Image.open(io.BytesIO(png)))
        else:
            decoded = np.frombuffer(base64.b64decode(entry["mask"]), np.uint8).reshape(8, 8)
        assert np.array_equal(decoded, result.mask), encoding
    tight = SegmentTask.options_from_query({"mask": "png"}, 10)
    with pytest.raises(LimitExceeded, match="more than the response limit of 10 bytes"):
        SegmentTask.results_json([result], tight)
    with pytest.raises(LimitExceeded, match="more than the response limit of 10 bytes"):
        SegmentTask.response_message("seg", "1", [result], tight)
