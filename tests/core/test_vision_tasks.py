"""Detect and Segment through the SDK on the committed models, against in-process ONNX Runtime
and the known contents of generated digit scenes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepserve import Client
from deepserve.training.scenes import make_scene

from ..mnist_sample import digits
from ..reference import pair_iou, run_in_process
from ..server_process import RunningServer

ROOT = Path(__file__).resolve().parents[2]
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


def test_detect_finds_the_digits_of_a_scene_in_original_pixels(client: Client) -> None:
    scene = _scene(4242)
    # Served at another size: boxes must come back in this image's pixels.
    height, width = 480, 400
    image = np.asarray(Image.fromarray(scene.image).resize((width, height), Image.BILINEAR))
    scale = np.array([width / 320, height / 320, width / 320, height / 320], np.float32)
    found = client.detect(image, model="ssd")
    assert found, "no detections"
    for box, label in zip(scene.boxes * scale, scene.labels, strict=True):
        best = max(
            (d for d in found if d.index == label),
            key=lambda d: pair_iou(box, np.array(d.box.as_tuple())),
            default=None,
        )
        assert best is not None and pair_iou(box, np.array(best.box.as_tuple())) >= 0.5, (
            label,
            box,
            [str(d) for d in found],
        )
        assert best.label == str(label)
    assert all(
        0 <= d.box.x1 <= d.box.x2 <= width and 0 <= d.box.y1 <= d.box.y2 <= height for d in found
    )


def test_detect_options_and_lists(client: Client) -> None:
    scenes = [_scene(s).image for s in (11, 12)]
    everything = client.detect(scenes, model="ssd", score_threshold=0.0)
    limited = client.detect(scenes, model="ssd", score_threshold=0.0, max_detections=2)
    assert len(everything) == len(limited) == 2
    for many, few in zip(everything, limited, strict=True):
        assert len(few) == min(2, len(many))
        assert [d.score for d in few] == sorted((d.score for d in many), reverse=True)[:2]
