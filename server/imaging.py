"""Image decoding and resizing for the Vision API: encoded bytes or raw pixels in, the uint8
HxWxC array a model takes out."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..v1 import vision_pb2 as vpb
from .errors import InvalidInput, LimitExceeded

# Pillow's own bomb check only warns between its limit and twice it: deepserve checks the
# header against its own budget (ImageLimits) before decoding, and Pillow's check stays behind it.
Image.MAX_IMAGE_PIXELS = None
_MODES = {1: "L", 3: "RGB"}
_BANDS = {
    "1": 1,
    "L": 1,
    "P": 1,
    "I": 1,
    "F": 1,
    "I;16": 1,
    "LA": 2,
    "PA": 2,
    "RGB": 3,
    "YCbCr": 3,
    "LAB": 3,
    "HSV": 3,
    "RGBA": 4,
    "CMYK": 4,
    "RGBX": 4,
    "RGBa": 4,
}


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int
    """Per image: width x height."""
    max_request_bytes: int
    """All images of one request, decoded: width x height x channels."""
    formats: tuple[str, ...]
    """Pillow format names that may be decoded."""


def _from_raw(raw: vpb.RawImage, index: int, limits: ImageLimits) -> tuple[Image.Image, int]:
    h, w, c = raw.height, raw.width, raw.channels
    if c not in (1, 3, 4) or h == 0 or w == 0:
        raise InvalidInput(
            f"image {index}: raw pixels need height, width > 0 and 1, 3 or 4 channels, "
            f"got {h}x{w}x{c}"
        )
    _check_pixels(index, w, h, limits)
    if len(raw.pixels) != h * w * c:
        raise InvalidInput(
            f"image {index}: raw pixels hold {len(raw.pixels)} bytes, expected {h * w * c} "
            f"for {h}x{w}x{c} uint8"
        )
    array = np.frombuffer(raw.pixels, np.uint8).reshape(h, w, c)
    return Image.fromarray(array[..., 0] if c == 1 else array), h * w * c


def _check_pixels(index: int, width: int, height: int, limits: ImageLimits) -> None:
    if width * height > limits.max_pixels:
        raise LimitExceeded(
            f"image {index}: {width}x{height} is {width * height} pixels, above this server's "
            f"limit of {limits.max_pixels} (max_image_pixels)"
        )


def _open(data: bytes, index: int, limits: ImageLimits) -> tuple[Image.Image, int]:
    """Read the header only, and check size and format before any pixel is decoded."""
    try:
        opened = Image.open(io.BytesIO(data), formats=limits.formats)
    except UnidentifiedImageError:
        raise InvalidInput(
            f"image {index}: {len(data)} encoded bytes are not an image in a format this "
            f"server decodes ({', '.join(limits.formats)})"
        ) from None
    except Exception as exc:  # Pillow's plugins raise many types for broken headers
        raise InvalidInput(
            f"image {index}: cannot read the image header ({_describe(exc)})"
        ) from None
    width, height = opened.size
    _check_pixels(index, width, height, limits)
    return opened, width * height * _BANDS.get(opened.mode, 4)


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}" if str(exc) else type(exc).__name__


def decode(
    image: vpb.Image, index: int, limits: ImageLimits, budget: int
) -> tuple[Image.Image, int]:
    """Any supported image -> a PIL image, upright (EXIF orientation applied), and its decoded
    size in bytes, refused before decoding when that is above `budget` (what is left of the
    request's)."""
    which = image.WhichOneof("source")
    if which == "raw":
        picture, decoded_bytes = _from_raw(image.raw, index, limits)
        _check_budget(index, decoded_bytes, budget, limits)
        return picture, decoded_bytes
    if which != "encoded" or not image.encoded:
        raise InvalidInput(f"image {index}: empty (set 'encoded' bytes or 'raw' pixels)")
    opened, decoded_bytes = _open(image.encoded, index, limits)
    _check_budget(index, decoded_bytes, budget, limits)
    try:
        opened.load()
        upright = ImageOps.exif_transpose(opened)
    except Exception as exc:  # truncated data, broken chunks (SyntaxError), bad EXIF, ...
        raise InvalidInput(
            f"image {index}: cannot decode the {opened.format} data ({_describe(exc)})"
        ) from None
    return upright, decoded_bytes


def _check_budget(index: int, decoded_bytes: int, budget: int, limits: ImageLimits) -> None:
    if decoded_bytes > budget:
        raise LimitExceeded(
            f"image {index}: the request's images decode to more than "
            f"{limits.max_request_bytes} bytes (width x height x channels), this server's limit "
            "per request (max_request_image_mb); send fewer or smaller images"
        )


def to_model_input(picture: Image.Image, height: int, width: int, channels: int) -> np.ndarray:
    """Convert (grayscale / RGB / RGBA / palette ...) to the model's channels and stretch to its
    size; returns uint8 [height, width, channels]."""
    mode = _MODES.get(channels)
    if mode is None:
        raise InvalidInput(f"models with {channels} input channels are not supported")
    try:
        if picture.mode != mode:
            if picture.mode in ("RGBA", "LA", "P", "PA") and mode == "RGB":
                picture = picture.convert("RGBA")
                background = Image.new("RGBA", picture.size, (255, 255, 255, 255))
                picture = Image.alpha_composite(background, picture)  # transparency over white
            picture = picture.convert(mode)
        if picture.size != (width, height):
            picture = picture.resize((width, height), Image.BILINEAR)
    except (ValueError, OSError) as exc:  # modes Pillow cannot convert (e.g. some 16-bit ones)
        raise InvalidInput(f"image of mode {picture.mode}: cannot convert it ({exc})") from None
    array = np.asarray(picture, np.uint8)
    return array[..., None] if channels == 1 else array


def header_sizes(images: list[vpb.Image], limits: ImageLimits) -> list[tuple[int, int]]:
    """Each image's (height, width) from its header or raw fields, without decoding."""
    sizes = []
    for index, image in enumerate(images):
        if image.WhichOneof("source") == "raw":
            sizes.append((image.raw.height, image.raw.width))
            continue
        if not image.encoded:
            raise InvalidInput(f"image {index}: empty (set 'encoded' bytes or 'raw' pixels)")
        opened, _ = _open(image.encoded, index, limits)
        sizes.append((opened.height, opened.width))
    return sizes


def prepare(
    images: list[vpb.Image], height: int, width: int, channels: int, limits: ImageLimits
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """A batch [N, height, width, channels] and each original (height, width)."""
    batch = np.empty((len(images), height, width, channels), np.uint8)
    sizes: list[tuple[int, int]] = []
    budget = limits.max_request_bytes
    for index, image in enumerate(images):
        picture, decoded_bytes = decode(image, index, limits, budget)
        budget -= decoded_bytes
        sizes.append((picture.height, picture.width))
        batch[index] = to_model_input(picture, height, width, channels)
    return batch, sizes
