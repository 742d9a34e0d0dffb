"""Image decoding and resizing for the Vision API: encoded bytes or raw pixels in, the uint8
HxWxC array a model takes out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..protocol.errors import InvalidInput, LimitExceeded, ServingError
from ..protocol.types import ImageSource
from .decode_work import BudgetedBytes, DecodeBounds, Stop, check_structure

# Pillow's own bomb check only warns between its limit and twice it: deepserve checks the
# header against its own budget (ImageLimits) before decoding, and Pillow's check stays behind it.
Image.MAX_IMAGE_PIXELS = None
_MODES = {1: "L", 3: "RGB"}


def _bytes_per_pixel(mode: str) -> int:
    """What Pillow keeps in memory per pixel: one byte for 8-bit single-band modes, two for
    16-bit ones, four for everything else (multi-band images are stored 32 bits a pixel)."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int
    """Per image: width x height."""
    max_request_bytes: int
    """All images of one request, decoded: width x height x channels."""
    formats: tuple[str, ...]
    """Pillow format names that may be decoded."""
    work: DecodeBounds
    """Scans, strips and CPU time one image may take to decode."""


def _from_raw(raw: ImageSource, index: int, limits: ImageLimits) -> tuple[Image.Image, int]:
    h, w, c = raw.height, raw.width, raw.channels
    if c not in (1, 3, 4) or h == 0 or w == 0:
        raise InvalidInput(
            f"image {index}: raw pixels need height, width > 0 and 1, 3 or 4 channels, "
            f"got {h}x{w}x{c}"
        )
    _check_pixels(index, w, h, limits)
    pixels = raw.pixels or b""
    if len(pixels) != h * w * c:
        raise InvalidInput(
            f"image {index}: raw pixels hold {len(pixels)} bytes, expected {h * w * c} "
            f"for {h}x{w}x{c} uint8"
        )
    array = np.frombuffer(pixels, np.uint8).reshape(h, w, c)
    return Image.fromarray(array[..., 0] if c == 1 else array), h * w * c


def _check_pixels(index: int, width: int, height: int, limits: ImageLimits) -> None:
    if width * height > limits.max_pixels:
        raise LimitExceeded(
            f"image {index}: {width}x{height} is {width * height} pixels, above this server's "
            f"limit of {limits.max_pixels} (max_image_pixels)"
        )


def _open(
    data: bytes, index: int, limits: ImageLimits, stop: Stop | None
) -> tuple[Image.Image, int]:
    """Read the header only, and check size, format and structure before any pixel is
    decoded; the pixels are then read through the decode budget."""
    source = BudgetedBytes(data, index, limits.work.cpu_ms, stop)
    try:
        opened = Image.open(source, formats=limits.formats)
    except UnidentifiedImageError:
        raise InvalidInput(
            f"image {index}: {len(data)} encoded bytes are not an image in a format this "
            f"server decodes ({', '.join(limits.formats)})"
        ) from None
    except ServingError:
        raise
    except Exception as exc:  # Pillow's plugins raise many types for broken headers
        raise InvalidInput(
            f"image {index}: cannot read the image header ({_describe(exc)})"
        ) from None
    width, height = opened.size
    _check_pixels(index, width, height, limits)
    check_structure(opened, source, index, limits.work)
    source.restart(opened.format)
    return opened, width * height * _bytes_per_pixel(opened.mode)


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}" if str(exc) else type(exc).__name__


def _opened(
    image: ImageSource, index: int, limits: ImageLimits, stop: Stop | None
) -> tuple[Image.Image, int]:
    """The image opened (header read, pixels not yet decoded) and its decoded size in bytes."""
    if image.pixels is not None:
        return _from_raw(image, index, limits)
    if not image.encoded:
        raise InvalidInput(f"image {index}: empty (set 'encoded' bytes or 'raw' pixels)")
    return _open(image.encoded, index, limits, stop)


def _decoded(opened: Image.Image, index: int) -> Image.Image:
    """Decode the pixels, upright (EXIF orientation applied)."""
    try:
        opened.load()
        return ImageOps.exif_transpose(opened)
    except ServingError:  # past the decode budget, or the caller is gone
        raise
    except Exception as exc:  # truncated data, broken chunks (SyntaxError), bad EXIF, ...
        raise InvalidInput(
            f"image {index}: cannot decode the {opened.format or 'raw'} data ({_describe(exc)})"
        ) from None


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
            picture = picture.resize((width, height), Image.Resampling.BILINEAR)
    except (ValueError, OSError) as exc:  # modes Pillow cannot convert (e.g. some 16-bit ones)
        raise InvalidInput(f"image of mode {picture.mode}: cannot convert it ({exc})") from None
    array = np.asarray(picture, np.uint8)
    return array[..., None] if channels == 1 else array


def open_all(
    images: list[ImageSource], limits: ImageLimits, stop: Stop | None = None
) -> list[Image.Image]:
    """Every image of a request opened from its header, each within the pixel and structure
    limits and all together within the request's decoded-size budget, before any pixel is
    decoded. `stop`, once set, ends the decoding of the request's images."""
    opened: list[Image.Image] = []
    total = 0
    for index, image in enumerate(images):
        picture, decoded_bytes = _opened(image, index, limits, stop)
        total += decoded_bytes
        if total > limits.max_request_bytes:
            raise LimitExceeded(
                f"image {index}: the request's images decode to more than "
                f"{limits.max_request_bytes} bytes (width x height x bytes a pixel), this server's "
                "limit per request (max_request_image_mb); send fewer or smaller images"
            )
        opened.append(picture)
    return opened


def prepare(
    opened: list[Image.Image], height: int, width: int, channels: int
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """A batch [N, height, width, channels] and each original (height, width)."""
    batch = np.empty((len(opened), height, width, channels), np.uint8)
    sizes: list[tuple[int, int]] = []
    for index, picture in enumerate(opened):
        upright = _decoded(picture, index)
        sizes.append((upright.height, upright.width))
        batch[index] = to_model_input(upright, height, width, channels)
    return batch, sizes
