"""Training data: the MNIST reader, digit scenes, metrics and the loaders for users' own data."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepserve.training import datasets, scenes
from deepserve.training.metrics import mean_average_precision, mean_iou
from deepserve.training.mnist_data import load_split, write_idx

from ..mnist_sample import digits


def test_idx_round_trip_and_offline_split(tmp_path: Path) -> None:
    images, labels = digits()
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    split = load_split(tmp_path)  # no training files: the offline split of what is there
    # 80 / 20, in order: of 10,000 that is the first 8,000 for training, the last 2,000 held out.
    assert np.array_equal(split.train_images, images[:400])
    assert np.array_equal(split.test_images, images[400:])
    assert np.array_equal(split.test_labels, labels[400:])


def test_standard_split_when_the_training_files_are_there(tmp_path: Path) -> None:
    images, labels = digits()
    for stem, array in (
        ("train-images-idx3-ubyte", images[:300]),
        ("train-labels-idx1-ubyte", labels[:300]),
    ):
        # The training files uncompressed (as torchvision leaves them), the test files gzip'd.
        packed = tmp_path / f"{stem}.gz"
        write_idx(packed, array)
        (tmp_path / stem).write_bytes(gzip.decompress(packed.read_bytes()))
        packed.unlink()
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images[300:])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels[300:])
    split = load_split(tmp_path)
    assert np.array_equal(split.train_images, images[:300])
    assert np.array_equal(split.train_labels, labels[:300])
    assert np.array_equal(split.test_images, images[300:])
    assert split.description.startswith("standard")


def test_scenes_are_deterministic_and_consistent() -> None:
    images, labels = digits()
    a = scenes.make_scene(images, labels, 123)
    b = scenes.make_scene(images, labels, 123)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert a.image.shape == (320, 320, 3) and a.mask.shape == (320, 320)
    assert 1 <= len(a.labels) <= 5
    for box in a.boxes:
        x1, y1, x2, y2 = box.astype(int)
        assert 0 <= x1 < x2 <= 320 and 0 <= y1 < y2 <= 320
        height = y2 - y1
        assert 10 <= height <= 90
    present = set(np.unique(a.mask)) - {0}
    assert present <= {int(d) + 1 for d in a.labels}


def test_metrics_on_known_cases() -> None:
    truth = [(np.array([[0, 0, 10, 10]], np.float32), np.array([3]))]
    perfect = [(np.array([[0, 0, 10, 10]], np.float32), np.array([0.9]), np.array([3]))]
    assert mean_average_precision(perfect, truth, 10)[0] == pytest.approx(1.0)
    shifted = [(np.array([[6, 6, 16, 16]], np.float32), np.array([0.9]), np.array([3]))]
    assert mean_average_precision(shifted, truth, 10)[0] == 0.0
    mask = np.array([[0, 1], [1, 2]], np.uint8)
    assert mean_iou([mask], [mask], 3)[0] == pytest.approx(1.0)
    assert mean_iou([np.zeros_like(mask)], [mask], 3)[0] == pytest.approx(0.25 / 3)


def test_image_folder_loader(tmp_path: Path) -> None:
    for name, value in (("cat", 10), ("dog", 200)):
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.fromarray(np.full((5, 7, 3), value, np.uint8)).save(tmp_path / name / f"{i}.png")
    data = datasets.image_folder(tmp_path)
    assert data.classes == ["cat", "dog"] and data.labels.tolist() == [0, 0, 1, 1]
    arrays = data.arrays((4, 4))
    assert arrays.shape == (4, 4, 4, 3) and arrays[2, 0, 0, 0] == 200


def test_coco_detection_loader(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "a.png")
    coco = {
        "images": [{"id": 7, "file_name": "a.png", "width": 30, "height": 20}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 5, "bbox": [2, 3, 10, 4], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 9, "bbox": [0, 0, 5, 5], "iscrowd": 1},
        ],
        "categories": [{"id": 9, "name": "nine"}, {"id": 5, "name": "five"}],
    }
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    names, samples = datasets.coco_detection(tmp_path / "ann.json", tmp_path)
    (sample,) = list(samples)
    assert names == ["five", "nine"]
    assert sample.boxes.tolist() == [[2, 3, 12, 7]] and sample.labels.tolist() == [0]
    assert sample.image.shape == (20, 30, 3)


def test_segmentation_folder_loader(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / "images" / "x.jpg")
    Image.fromarray(np.eye(6, 8, dtype=np.uint8) * 2).save(tmp_path / "masks" / "x.png")
    ((image, mask),) = list(datasets.segmentation_folders(tmp_path / "images", tmp_path / "masks"))
    assert image.shape == (6, 8, 3) and mask.shape == (6, 8) and mask.max() == 2
