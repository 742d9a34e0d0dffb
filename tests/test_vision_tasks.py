"""Detect and Segment through the SDK on the committed models, against in-process ONNX Runtime
and the known contents of generated digit scenes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepserve import Client
from deepserve.training.scenes import make_scene

from .mnist_sample import digits
from .reference import run_in_process
from .server_process import RunningServer

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"


def _scene(seed: int):
    images, labels = digits()
    return make_scene(images, labels, seed)


@pytest.fixture()
def client(bundled_server: RunningServer):
    with Client(bundled_server.url, retries=0) as client:
        yield client


def _in_process_mask(image: np.ndarray) -> np.ndarray:
    """What the server should answer: stretch to 320x320 (bilinear), run the model, bring the
    mask back to the image's size (nearest)."""
    resized = np.asarray(Image.fromarray(image).resize((320, 320), Image.BILINEAR))
    mask = run_in_process(MODELS, "segmentation", {"image": resized[None]})["mask"][0]
    height, width = image.shape[:2]
    return np.asarray(Image.fromarray(mask).resize((width, height), Image.NEAREST))


@pytest.mark.parametrize("size", [(320, 320), (240, 400), (500, 350)])
def test_segment_mask_has_the_original_size_and_matches_onnxruntime(
    client: Client, size: tuple[int, int]
) -> None:
    scene = _scene(77)
    height, width = size
    image = np.asarray(Image.fromarray(scene.image).resize((width, height), Image.BILINEAR))
    result = client.segment(image, model="segmentation")
    assert result.mask.shape == (height, width) and result.mask.dtype == np.uint8
    assert result.labels[0] == "background" and len(result.labels) == 11
    np.testing.assert_array_equal(result.mask, _in_process_mask(image))


def test_segment_png_and_lists(client: Client) -> None:
    scenes = [_scene(s).image for s in (5, 6, 7)]
    raw = client.segment(scenes, model="segmentation")
    png = client.segment(scenes, model="segmentation", png=True)
    assert len(raw) == len(png) == 3
    for a, b in zip(raw, png, strict=True):
        np.testing.assert_array_equal(a.mask, b.mask)
