"""What one image may cost to decode, beyond its pixel count: small files can hold work that
the pixel limit does not see (a progressive JPEG's scans, a TIFF's strips, a BMP's run-length
escapes). Counted from the header before decoding, then bounded while decoding by a CPU budget
that stops the decoder, not just the caller's wait."""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass

from PIL import Image

from ..protocol.errors import DeadlineExceeded, LimitExceeded

# Pillow feeds its JPEG decoder whatever one read returns; short reads keep the work between
# two budget checks small (about 4 % slower on a 12-megapixel JPEG than 64 KiB reads). Other
# plugins count the bytes they asked for, so their reads are left as asked (64 KiB at most).
READ_BLOCK = 16 * 1024
# Pillow decodes run-length BMPs in Python (about half a microsecond a pixel, holding the
# interpreter), and fills a "delta" escape of up to 255 rows in one allocation: such BMPs are
# kept small (a legacy format; other BMPs have no such bound).
RLE_BMP_MAX_WIDTH = 1 << 14
RLE_BMP_MAX_PIXELS = 1 << 18
_TIFF_STRIP_OFFSETS, _TIFF_TILE_OFFSETS = 273, 324
_BMP_RLE = (1, 2)  # BI_RLE8, BI_RLE4
_JPEG_START_OF_SCAN = b"\xff\xda"  # cannot occur inside entropy-coded data (0xFF is stuffed)
# Rough costs on one core, measured with Pillow: decoding and resizing a pixel, a progressive
# JPEG's pass over a pixel, a pixel of a run-length BMP (decoded in Python), a TIFF strip.
_NS_PER_PIXEL, _NS_PER_PIXEL_SCAN, _NS_PER_RLE_PIXEL, _NS_PER_STRIP = 15, 5, 550, 10_000


@dataclass(frozen=True)
class DecodeBounds:
    max_scans: int
    """Progressive JPEG scans per image."""
    max_strips: int
    """TIFF strips or tiles per image."""
    cpu_ms: float
    """CPU time one image's decode may take."""


def check_structure(
    opened: Image.Image, source: BudgetedBytes, index: int, bounds: DecodeBounds
) -> None:
    """Refuse, from the header, images whose decode would take many passes or parts."""
    kind = opened.format
    if kind == "JPEG":
        scans = source.scans = source.data.count(_JPEG_START_OF_SCAN)
        if scans > bounds.max_scans:
            raise LimitExceeded(
                f"image {index}: the JPEG has {scans} scans, above this server's limit of "
                f"{bounds.max_scans} (max_image_scans); a progressive JPEG usually has about 10"
            )
    elif kind == "TIFF":
        tags = getattr(opened, "tag_v2", {})
        offsets = tags.get(_TIFF_STRIP_OFFSETS) or tags.get(_TIFF_TILE_OFFSETS) or ()
        parts = len(offsets) if isinstance(offsets, tuple | list) else 1
        if parts > bounds.max_strips:
            raise LimitExceeded(
                f"image {index}: the TIFF has {parts} strips or tiles, above this server's "
                f"limit of {bounds.max_strips} (max_image_strips)"
            )
    elif kind == "BMP" and opened.info.get("compression") in _BMP_RLE:
        width, height = opened.size
        if width > RLE_BMP_MAX_WIDTH or width * height > RLE_BMP_MAX_PIXELS:
            raise LimitExceeded(
                f"image {index}: a run-length encoded BMP may be at most {RLE_BMP_MAX_WIDTH} "
                f"pixels wide and {RLE_BMP_MAX_PIXELS} pixels in all, got {width}x{height}"
            )


def estimated_ms(opened: Image.Image) -> float:
    """About how long decoding this opened image will take, from its header."""
    if opened.format is None:  # raw pixels: nothing to decode
        return 0.0
    pixels = opened.width * opened.height
    ns = pixels * _NS_PER_PIXEL
    if opened.format == "JPEG" and opened.info.get("progressive"):
        source = getattr(opened, "fp", None)  # ImageFile's; the budgeted bytes here
        ns += pixels * _NS_PER_PIXEL_SCAN * getattr(source, "scans", 0)
    elif opened.format == "BMP" and opened.info.get("compression") in _BMP_RLE:
        ns += pixels * _NS_PER_RLE_PIXEL
    elif opened.format == "TIFF":
        ns += len(getattr(opened, "tile", ())) * _NS_PER_STRIP
    return ns / 1e6


Stop = threading.Event
"""Set from the event loop when the caller is gone: every budgeted read then stops."""


class BudgetedBytes(io.BytesIO):
    """The encoded image as Pillow reads it, checking at every read that the decode is still
    within its CPU budget and that the caller still waits; reads at most READ_BLOCK bytes."""

    def __init__(self, data: bytes, index: int, cpu_ms: float, stop: Stop | None) -> None:
        super().__init__(data)
        self._index = index
        self._cpu_ms = cpu_ms
        self._stop = stop
        self._spent = 0.0
        self._thread, self._last = threading.get_ident(), time.thread_time()
        self._block: int | None = None
        self._reads = 0
        self.data = data
        self.scans = 0
        """A JPEG's scans, counted by check_structure."""
        self._split_scans = False

    def restart(self, kind: str | None) -> None:
        """Start the budget now (the header was read before it). A JPEG is then read in short
        blocks that also end before each scan, so the budget is checked between scans."""
        self._spent = 0.0
        self._thread, self._last = threading.get_ident(), time.thread_time()
        if kind == "JPEG":
            self._block = READ_BLOCK
            self._split_scans = True

    def read(self, size: int | None = -1) -> bytes:
        self._reads += 1
        # Reading the CPU clock is a system call: a decoder that reads a byte at a time (the
        # run-length BMP one) checks every 64th read.
        if self._reads % 64 == 0 or size is None or not 0 <= size < 64:
            self.check()
        if self._block is not None and size is not None and size > self._block:
            size = self._block  # a plugin asking for the rest (-1) gets it: it decodes it at once
        if self._split_scans and size is not None and size > 0:
            here = self.tell()
            next_scan = self.data.find(_JPEG_START_OF_SCAN, here + 1, here + size)
            if next_scan > 0:
                size = next_scan - here
        return super().read(size)

    def check(self) -> None:
        if self._stop is not None and self._stop.is_set():
            raise DeadlineExceeded(f"image {self._index}: the caller stopped waiting")
        now, thread = time.thread_time(), threading.get_ident()
        if thread == self._thread:  # CPU clocks are per thread: a new one starts counting anew
            self._spent += now - self._last
        self._thread, self._last = thread, now
        if self._spent * 1000 > self._cpu_ms:
            raise LimitExceeded(
                f"image {self._index}: decoding took more than this server's budget of "
                f"{self._cpu_ms:g} ms of CPU per image (max_image_decode_ms)"
            )
