"""Loaders for users' own data, in the layouts people already have:

- classification: an ImageFolder tree (`root/<class>/<image>`), read with torchvision;
- detection: COCO-format JSON (`images`, `annotations` with `bbox` [x, y, w, h], `categories`);
- segmentation: an image folder and a mask folder whose files share names (masks are
  single-channel PNGs of class indices).

Each yields uint8 RGB arrays and targets in the form the training scripts use.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), np.uint8)


@dataclass(frozen=True)
class ClassifiedImages:
    images: list[Path]
    labels: np.ndarray  # int64 class index per image
    classes: list[str]

    def arrays(self, size: tuple[int, int]) -> np.ndarray:
        """All images as uint8 [N, height, width, 3], stretched to `size` (height, width)."""
        height, width = size
        return np.stack(
            [
                np.asarray(Image.open(p).convert("RGB").resize((width, height), Image.BILINEAR))
                for p in self.images
            ]
        )


def image_folder(root: Path) -> ClassifiedImages:
    """`root/<class name>/<image>`: classes sorted by name, as torchvision's ImageFolder."""
    from torchvision.datasets import ImageFolder

    folder = ImageFolder(str(root))
    return ClassifiedImages(
        images=[Path(path) for path, _ in folder.samples],
        labels=np.array([label for _, label in folder.samples], np.int64),
        classes=list(folder.classes),
    )


@dataclass(frozen=True)
class DetectionSample:
    image: np.ndarray  # uint8 [H, W, 3]
    boxes: np.ndarray  # float32 [K, 4] x1 y1 x2 y2 pixels
    labels: np.ndarray  # int64 [K], index into the category list


def coco_detection(
    annotations: Path, images_dir: Path
) -> tuple[list[str], Iterator[DetectionSample]]:
    """Category names (in category-id order) and the samples of a COCO-format JSON file.
    Crowd annotations and empty boxes are skipped."""
    data = json.loads(annotations.read_text())
    categories = sorted(data["categories"], key=lambda c: c["id"])
    index_of = {c["id"]: i for i, c in enumerate(categories)}
    by_image: dict[int, list[dict]] = {}
    for ann in data.get("annotations", []):
        if ann.get("iscrowd", 0) or ann["bbox"][2] <= 0 or ann["bbox"][3] <= 0:
            continue
        by_image.setdefault(ann["image_id"], []).append(ann)

    def samples() -> Iterator[DetectionSample]:
        for info in data["images"]:
            anns = by_image.get(info["id"], [])
            boxes = np.array(
                [
                    [
                        a["bbox"][0],
                        a["bbox"][1],
                        a["bbox"][0] + a["bbox"][2],
                        a["bbox"][1] + a["bbox"][3],
                    ]
                    for a in anns
                ],
                np.float32,
            )
            yield DetectionSample(
                image=_rgb(images_dir / info["file_name"]),
                boxes=boxes.reshape(-1, 4),
                labels=np.array([index_of[a["category_id"]] for a in anns], np.int64),
            )

    return [c["name"] for c in categories], samples()


def segmentation_folders(
    images_dir: Path, masks_dir: Path
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(uint8 RGB image, uint8 class mask) pairs; a mask is found by the image's file stem."""
    masks = {p.stem: p for p in masks_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    for path in sorted(images_dir.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.stem not in masks:
            raise FileNotFoundError(f"no mask for {path.name} in {masks_dir}")
        image = _rgb(path)
        with Image.open(masks[path.stem]) as mask_image:
            mask = np.asarray(mask_image, np.uint8)
        if mask.ndim != 2 or mask.shape != image.shape[:2]:
            raise ValueError(f"mask of {path.name}: shape {mask.shape}, image {image.shape[:2]}")
        yield image, mask
