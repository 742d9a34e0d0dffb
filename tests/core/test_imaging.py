"""Image opening and preparation in process: limits from the headers before any pixel is
decoded, formats, raw pixels, and the batch a model gets."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from deepserve.server.core import imaging
from deepserve.server.protocol.errors import InvalidInput, LimitExceeded
from deepserve.server.protocol.types import ImageSource

from ..hostile_images import png_bomb

LIMITS = imaging.ImageLimits(max_pixels=100 * 100, max_request_bytes=3 * 100 * 100,
                             formats=("PNG", "JPEG"))  # fmt: skip


def _encoded(size: tuple[int, int], mode: str = "RGB", kind: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 128 if mode == "L" else (10, 200, 30)).save(buffer, format=kind)
    return buffer.getvalue()


def test_a_batch_at_the_models_size_and_the_original_sizes() -> None:
    opened = imaging.open_all(
        [ImageSource(_encoded((40, 20))), ImageSource(_encoded((10, 10), "L", "JPEG"))], LIMITS
    )
    batch, sizes = imaging.prepare(opened, 8, 8, 3)
    assert batch.shape == (2, 8, 8, 3) and batch.dtype == np.uint8
    assert sizes == [(20, 40), (10, 10)]
    assert tuple(batch[0, 4, 4]) == (10, 200, 30)
    gray, _ = imaging.prepare(opened[1:], 4, 4, 1)
    assert gray.shape == (1, 4, 4, 1)


def test_limits_are_checked_from_the_header() -> None:
    with pytest.raises(LimitExceeded, match=r"image 0: 200x200 is 40000 pixels"):
        imaging.open_all([ImageSource(_encoded((200, 200)))], LIMITS)
    with pytest.raises(LimitExceeded, match=r"image 0: .* pixels, above"):
        imaging.open_all([ImageSource(png_bomb(20_000))], LIMITS)
    imaging.open_all([ImageSource(_encoded((50, 50)))] * 2, LIMITS)
    # 3 or 4 bytes a pixel decoded (RGB is held as RGBX): the fourth or fifth is past 30,000.
    five = [ImageSource(_encoded((50, 50)))] * 5
    with pytest.raises(LimitExceeded, match=r"image [34]: the request's images decode to more"):
        imaging.open_all(five, LIMITS)


def test_formats_and_raw_pixels_are_checked() -> None:
    with pytest.raises(InvalidInput, match=r"image 0: .* not an image in a format .*PNG, JPEG"):
        imaging.open_all([ImageSource(_encoded((10, 10), kind="BMP"))], LIMITS)
    with pytest.raises(InvalidInput, match="image 0: empty"):
        imaging.open_all([ImageSource(b"")], LIMITS)
    with pytest.raises(InvalidInput, match="raw pixels hold 5 bytes, expected 12"):
        imaging.open_all([ImageSource(None, b"12345", 2, 2, 3)], LIMITS)
    with pytest.raises(InvalidInput, match="1, 3 or 4 channels, got 2x2x2"):
        imaging.open_all([ImageSource(None, b"1234" * 2, 2, 2, 2)], LIMITS)
    (raw,) = imaging.open_all([ImageSource(None, bytes(range(12)), 2, 2, 3)], LIMITS)
    assert np.asarray(raw).tolist()[1][1] == [9, 10, 11]
