"""Image opening and preparation in process: limits from the headers before any pixel is
decoded, formats, raw pixels, and the batch a model gets."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from deepserve.server.core import imaging
from deepserve.server.core.decode_work import DecodeBounds, Stop
from deepserve.server.protocol.errors import DeadlineExceeded, InvalidInput, LimitExceeded
from deepserve.server.protocol.types import ImageSource

from ..hostile_images import (
    many_frames_gif,
    many_scans_jpeg,
    many_strips_tiff,
    png_bomb,
    rle_bmp_many_runs,
    rle_bmp_wide_delta,
)

WORK = DecodeBounds(max_scans=64, max_strips=1 << 14, cpu_ms=1000)
LIMITS = imaging.ImageLimits(max_pixels=100 * 100, max_request_bytes=3 * 100 * 100,
                             formats=("PNG", "JPEG"), work=WORK)  # fmt: skip
# Every format, and the sizes of the hostile files below.
WIDE = imaging.ImageLimits(max_pixels=40_000_000, max_request_bytes=1 << 30,
                           formats=("PNG", "JPEG", "BMP", "TIFF", "GIF"), work=WORK)  # fmt: skip


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


def test_images_that_cost_many_passes_are_refused_from_the_header() -> None:
    # 1,000 scans of a 1-megapixel JPEG: 18 KB that take about a second to decode.
    with pytest.raises(LimitExceeded, match=r"image 0: the JPEG has 1000 scans, .* 64 "):
        imaging.open_all([ImageSource(many_scans_jpeg(1000))], WIDE)
    (ordinary,) = imaging.open_all([ImageSource(many_scans_jpeg(12, 64, 64))], WIDE)
    assert imaging.prepare([ordinary], 8, 8, 3)[0].shape == (1, 8, 8, 3)
    with pytest.raises(LimitExceeded, match=r"the TIFF has 20000 strips or tiles, .* 16384"):
        imaging.open_all([ImageSource(many_strips_tiff(20_000))], WIDE)
    (strips,) = imaging.open_all([ImageSource(many_strips_tiff(500))], WIDE)
    assert imaging.prepare([strips], 500, 1, 1)[0][0, 499, 0, 0] == 7
    # 1 KB whose one "delta" escape would make Pillow fill 255 x 4,000,000 bytes at once
    with pytest.raises(LimitExceeded, match=r"run-length encoded BMP .* 16384 .* 4000000x1"):
        imaging.open_all([ImageSource(rle_bmp_wide_delta())], WIDE)
    # decoded in Python, a pixel at a time: at most 512 x 512
    with pytest.raises(LimitExceeded, match=r"run-length encoded BMP .* 262144 .* 2000x2000"):
        imaging.open_all([ImageSource(rle_bmp_many_runs())], WIDE)
    (legacy,) = imaging.open_all([ImageSource(rle_bmp_many_runs(512, 512))], WIDE)
    assert imaging.prepare([legacy], 512, 512, 1)[0][0, 511, 0, 0] == 0x80


def test_a_decode_past_its_cpu_budget_is_stopped_not_just_abandoned() -> None:
    """A progressive JPEG of 64 scans over 36 megapixels (about 2 s of CPU to decode here): the
    budget stops the decoder itself, on the thread that runs it."""
    budget = imaging.ImageLimits(
        max_pixels=40_000_000, max_request_bytes=1 << 30, formats=("JPEG",),
        work=DecodeBounds(max_scans=64, max_strips=64, cpu_ms=50),
    )  # fmt: skip
    (opened,) = imaging.open_all([ImageSource(many_scans_jpeg(64, 6000, 6000))], budget)
    started = time.thread_time()
    with pytest.raises(LimitExceeded, match=r"image 0: decoding took more .* 50 ms .*decode_ms"):
        imaging.prepare([opened], 8, 8, 3)
    assert time.thread_time() - started < 0.5
    (small,) = imaging.open_all([ImageSource(many_scans_jpeg(64, 100, 100))], budget)
    assert imaging.prepare([small], 100, 100, 3)[0].shape == (1, 100, 100, 3)


def test_only_the_first_frame_of_an_animation_is_decoded() -> None:
    gif = many_frames_gif(3000)
    (opened,) = imaging.open_all([ImageSource(gif)], WIDE)
    batch, _ = imaging.prepare([opened], 64, 64, 1)
    assert int(batch[0, 10, 10, 0]) == 0 and opened.tell() == 0  # frame 0, nothing past it


@pytest.mark.parametrize("kind", ["JPEG-progressive", "JPEG", "PNG", "TIFF", "BMP", "GIF", "WEBP"])
def test_decoding_through_the_budget_gives_pillows_pixels(kind: str) -> None:
    """Reads in short blocks (and a JPEG's ending at each scan) change nothing decoded."""
    pixels = np.random.default_rng(3).integers(0, 256, (300, 500, 3), np.uint8)
    buffer = io.BytesIO()
    form = kind.split("-")[0]
    Image.fromarray(pixels).save(buffer, form, progressive=kind.endswith("progressive"))
    limits = imaging.ImageLimits(
        max_pixels=1 << 20, max_request_bytes=1 << 24, formats=(form,), work=WORK
    )
    (opened,) = imaging.open_all([ImageSource(buffer.getvalue())], limits)
    batch, _ = imaging.prepare([opened], 300, 500, 3)
    expected = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    assert np.array_equal(batch[0], expected)


def test_a_stopped_request_stops_decoding() -> None:
    stop = Stop()
    (opened,) = imaging.open_all([ImageSource(_encoded((60, 60)))], LIMITS, stop)
    stop.set()
    with pytest.raises(DeadlineExceeded, match="image 0: the caller stopped waiting"):
        imaging.prepare([opened], 8, 8, 3)
