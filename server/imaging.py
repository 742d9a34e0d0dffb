"""Image decoding and resizing for the Vision API: encoded bytes or raw pixels in, the uint8
HxWxC array a model takes out."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..v1 import vision_pb2 as vpb
from .errors import InvalidInput

# Decompression bombs: refuse images past 64 megapixels instead of exhausting memory.
Image.MAX_IMAGE_PIXELS = 64_000_000
_MODES = {1: "L", 3: "RGB"}


def _from_raw(raw: vpb.RawImage, index: int) -> Image.Image:
    h, w, c = raw.height, raw.width, raw.channels
    if c not in (1, 3, 4) or h == 0 or w == 0:
        raise InvalidInput(
            f"image {index}: raw pixels need height, width > 0 and 1, 3 or 4 channels, "
            f"got {h}x{w}x{c}"
        )
    if len(raw.pixels) != h * w * c:
        raise InvalidInput(
            f"image {index}: raw pixels hold {len(raw.pixels)} bytes, expected {h * w * c} "
            f"for {h}x{w}x{c} uint8"
        )
    array = np.frombuffer(raw.pixels, np.uint8).reshape(h, w, c)
    return Image.fromarray(array[..., 0] if c == 1 else array)


def decode(image: vpb.Image, index: int) -> Image.Image:
    """Any supported image -> a PIL image, upright (EXIF orientation applied)."""
    which = image.WhichOneof("source")
    if which == "raw":
        return _from_raw(image.raw, index)
    if which != "encoded" or not image.encoded:
        raise InvalidInput(f"image {index}: empty (set 'encoded' bytes or 'raw' pixels)")
    try:
        opened = Image.open(io.BytesIO(image.encoded))
        opened.load()
    except UnidentifiedImageError as exc:
        raise InvalidInput(
            f"image {index}: {len(image.encoded)} encoded bytes are not an image format the "
            "server reads (JPEG, PNG, BMP, GIF, TIFF, WebP, ...)"
        ) from exc
    except (OSError, Image.DecompressionBombError, ValueError) as exc:
        raise InvalidInput(f"image {index}: cannot decode the encoded bytes ({exc})") from exc
    return ImageOps.exif_transpose(opened)


def to_model_input(picture: Image.Image, height: int, width: int, channels: int) -> np.ndarray:
    """Convert (grayscale / RGB / RGBA / palette ...) to the model's channels and stretch to its
    size; returns uint8 [height, width, channels]."""
    mode = _MODES.get(channels)
    if mode is None:
        raise InvalidInput(f"models with {channels} input channels are not supported")
    if picture.mode != mode:
        if picture.mode in ("RGBA", "LA", "P") and mode == "RGB":
            picture = picture.convert("RGBA")
            background = Image.new("RGBA", picture.size, (255, 255, 255, 255))
            picture = Image.alpha_composite(background, picture)  # transparency over white
        picture = picture.convert(mode)
    if picture.size != (width, height):
        picture = picture.resize((width, height), Image.BILINEAR)
    array = np.asarray(picture, np.uint8)
    return array[..., None] if channels == 1 else array


def prepare(
    images: list[vpb.Image], height: int, width: int, channels: int
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """A batch [N, height, width, channels] and each original (height, width)."""
    batch = np.empty((len(images), height, width, channels), np.uint8)
    sizes: list[tuple[int, int]] = []
    for index, image in enumerate(images):
        picture = decode(image, index)
        sizes.append((picture.height, picture.width))
        batch[index] = to_model_input(picture, height, width, channels)
    return batch, sizes
