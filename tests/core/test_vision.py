"""Vision in process: images opened, resized and batched for a model's task, the answer made
by the task; a scheduler stands in for the model (it scores the mean brightness)."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
from PIL import Image
from tritonclient.grpc import model_config_pb2 as mc

from deepserve.server.core.dataplane import DataPlane
from deepserve.server.core.vision import Vision
from deepserve.server.protocol.errors import InvalidInput, LimitExceeded, TaskNotSupported
from deepserve.server.protocol.types import ImageSource
from deepserve.server.settings import ServerSettings
from deepserve.server.tasks.classify import ClassifyOptions

from .fakes import FunctionScheduler, OneModel, version


def _brightness(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Class 1 for bright images, class 0 for dark ones."""
    mean = feeds["image"].reshape(len(feeds["image"]), -1).mean(axis=1)
    return {"logits": np.stack([255 - mean, mean], axis=1).astype(np.float32)}


def _vision(task: str = "classification", max_batch_size: int = 2):
    config = mc.ModelConfig(name="light", max_batch_size=max_batch_size)
    config.input.add(name="image", data_type=mc.TYPE_UINT8, dims=[8, 8, 1])
    config.output.add(name="logits", data_type=mc.TYPE_FP32, dims=[2])
    for key, value in {"task": task, "image_height": "8", "image_width": "8",
                       "image_channels": "1"}.items():  # fmt: skip
        config.parameters[key].string_value = value
    scheduler = FunctionScheduler(_brightness)
    models = OneModel(version(config, scheduler, {"logits": ["dark", "bright"]}))
    settings = ServerSettings(max_image_pixels=64 * 64)
    return Vision(DataPlane(models), models, settings), scheduler


def _png(value: int, size: int = 16) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (size, size), value).save(buffer, format="PNG")
    return buffer.getvalue()


def _run(vision: Vision, task: str, images: list[ImageSource]):
    return asyncio.run(vision.run(task, "light", "", images, ClassifyOptions(1)))


def test_images_become_one_batch_per_max_batch_size_and_answers_in_order() -> None:
    vision, scheduler = _vision(max_batch_size=2)
    images = [ImageSource(_png(250)), ImageSource(_png(5)),
              ImageSource(None, bytes([200]) * 64, 8, 8, 1)]  # fmt: skip
    model, results = _run(vision, "classification", images)
    assert model.name == "light"
    assert [r.labels[0].label for r in results] == ["bright", "dark", "bright"]
    assert [items for items, *_ in scheduler.jobs] == [2, 1]


def test_the_task_and_the_images_are_checked_first() -> None:
    vision, scheduler = _vision()
    with pytest.raises(TaskNotSupported, match="model 'light' does classification, not detection"):
        _run(vision, "detection", [ImageSource(_png(0))])
    with pytest.raises(InvalidInput, match="the request has no images"):
        _run(vision, "classification", [])
    with pytest.raises(LimitExceeded, match="image 0: 128x128 is 16384 pixels"):
        _run(vision, "classification", [ImageSource(_png(0, size=128))])
    with pytest.raises(InvalidInput, match="image 1"):
        _run(vision, "classification", [ImageSource(_png(0)), ImageSource(b"not an image")])
    assert scheduler.jobs == []


def test_a_model_without_task_parameters_says_why() -> None:
    vision, _ = _vision(task="")
    with pytest.raises(TaskNotSupported, match="has no 'task' parameter"):
        _run(vision, "classification", [ImageSource(_png(0))])
    (summary,) = vision.models()
    assert summary.ready and summary.task == ""


def test_models_lists_each_task_with_its_input_and_labels() -> None:
    vision, _ = _vision()
    (summary,) = vision.models()
    assert (summary.task, summary.image_height, summary.labels) == (
        "classification", 8, ("dark", "bright")
    )  # fmt: skip
