"""The committed models, evaluated through the running server on held-out data, against the
bars their model cards state (MNIST test digits 8000-8499 lie in the held-out part)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepserve import Client
from deepserve.training.metrics import mean_average_precision, mean_iou
from deepserve.training.scenes import make_scene

from ..mnist_sample import digits
from ..reference import pair_iou
from ..server_process import RunningServer

MODELS = Path(__file__).resolve().parents[2] / "models"


def _card(model: str) -> dict:
    return json.loads((MODELS / model / "training_report.json").read_text())


@pytest.fixture(scope="module")
def client(bundled_server: RunningServer):
    # Retried as applications are: a slow machine may refuse a batch of 120 scenes at first.
    with Client(bundled_server.url) as client:
        yield client


def test_mnist_accuracy(client: Client) -> None:
    images, labels = digits()
    results = client.classify(list(images), model="mnist")
    accuracy = np.mean([int(r.label) == y for r, y in zip(results, labels, strict=True)])
    assert accuracy >= 0.985, accuracy
    assert _card("mnist")["held_out_accuracy"] >= 0.985


def test_resnet_transfer_accuracy_and_gain_over_scratch(client: Client) -> None:
    images, labels = digits()
    rgb32 = [
        np.asarray(Image.fromarray(i).resize((32, 32), Image.BILINEAR).convert("RGB"))
        for i in images
    ]
    results = client.classify(rgb32, model="resnet_transfer")
    accuracy = np.mean([int(r.label) == y for r, y in zip(results, labels, strict=True)])
    card = _card("resnet_transfer")
    assert accuracy >= 0.96, accuracy  # the card: 0.985 on all 2,000 held-out digits
    assert card["held_out_accuracy_transfer"] > card["held_out_accuracy_scratch"] + 0.1


def _held_out_scenes(count: int):
    images, labels = digits()
    return [make_scene(images, labels, 909_090 + i) for i in range(count)]


@pytest.mark.skipif(not (MODELS / "ssd").is_dir(), reason="no ssd model committed yet")
def test_ssd_map50(client: Client) -> None:
    scenes = _held_out_scenes(120)
    found = client.detect([s.image for s in scenes], model="ssd", score_threshold=0.05)
    predictions = [
        (
            np.array([d.box.as_tuple() for d in f], np.float32).reshape(-1, 4),
            np.array([d.score for d in f]),
            np.array([d.index for d in f]),
        )
        for f in found
    ]
    map50, _ = mean_average_precision(predictions, [(s.boxes, s.labels) for s in scenes], 10)
    assert map50 >= 0.90, map50
    # And with the default threshold, each scene's digits are found (IoU >= 0.5 per true box).
    default = client.detect([s.image for s in scenes[:20]], model="ssd")
    hits = total = 0
    for scene, boxes in zip(scenes[:20], default, strict=True):
        for true_box, label in zip(scene.boxes, scene.labels, strict=True):
            total += 1
            hits += any(
                d.index == label and pair_iou(true_box, np.array(d.box.as_tuple())) >= 0.5
                for d in boxes
            )
    assert hits / total >= 0.85, (hits, total)


def test_segmentation_miou(client: Client) -> None:
    scenes = _held_out_scenes(40)
    masks = client.segment([s.image for s in scenes], model="segmentation")
    miou, _ = mean_iou([m.mask for m in masks], [s.mask for s in scenes], 11)
    assert miou >= 0.80, miou
    assert _card("segmentation")["miou_onnx"] >= 0.80
