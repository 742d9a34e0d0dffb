"""Images an attacker or a broken client might send: decompression bombs, broken chunks,
truncated files, every format the server reads."""

from __future__ import annotations

import functools
import io
import struct
import zlib

import numpy as np
from PIL import Image

FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


@functools.cache
def png_bomb(width: int = 11_000, height: int = 11_000) -> bytes:
    """A valid grayscale PNG of width x height black pixels: a few hundred KB on the wire,
    width x height bytes once decoded."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    compressor = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then the pixels
    parts = [compressor.compress(row) for _ in range(height)]
    parts.append(compressor.flush())
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", b"".join(parts))
        + _chunk(b"IEND", b"")
    )


def encoded(format: str, width: int = 48, height: int = 32, seed: int = 0) -> bytes:
    """A real image of random pixels in `format`."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=format)
    return buffer.getvalue()


def broken_chunk_length_png() -> bytes:
    """A PNG whose IDAT chunk declares a wrong length, so the next chunk name is read from the
    middle of the pixel data (Pillow raises SyntaxError while decoding)."""
    data = bytearray(encoded("PNG"))
    start = data.index(b"IDAT") - 4
    data[start : start + 4] = struct.pack(">I", 5)
    return bytes(data)


def _jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each marker segment; a scan's segment runs to the end of its
    entropy-coded data."""
    segments, position = [], 2
    while position < len(data):
        marker = data[position + 1]
        if marker == 0xD9:  # end of image
            segments.append((marker, position, position + 2))
            break
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        end = position + 2 + length
        if marker == 0xDA:  # start of scan: skip stuffed bytes and restart markers
            while True:
                end = data.index(b"\xff", end)
                if data[end + 1] == 0 or 0xD0 <= data[end + 1] <= 0xD7:
                    end += 2
                    continue
                break
        segments.append((marker, position, end))
        position = end
    return segments


@functools.cache
def many_scans_jpeg(scans: int, width: int = 1024, height: int = 1024) -> bytes:
    """A valid progressive JPEG of a flat image whose last scan is repeated up to `scans`
    scans: a few bytes a scan on the wire, each one a pass over every block when decoded."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 150)).save(buffer, "JPEG", progressive=True)
    data = buffer.getvalue()
    starts = [s for s in _jpeg_segments(data) if s[0] == 0xDA]
    _, first, last = starts[-1]
    repeated = data[first:last] * (scans - len(starts))
    return data[:last] + repeated + b"\xff\xd9"


def many_strips_tiff(strips: int) -> bytes:
    """A 1-pixel-wide grayscale TIFF with one row per strip."""
    buffer = io.BytesIO()
    Image.new("L", (1, strips), 7).save(buffer, "TIFF", tiffinfo={278: 1})
    return buffer.getvalue()


def _rle_bmp(width: int, height: int, pixels: bytes) -> bytes:
    """An 8-bit run-length encoded BMP (BI_RLE8) with a grayscale palette."""
    palette = b"".join(bytes((i, i, i, 0)) for i in range(256))
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(pixels), 2835, 2835, 256, 0)
    head = b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset)
    return head + info + palette + pixels


def rle_bmp_wide_delta(width: int = 4_000_000) -> bytes:
    """One row, `width` wide, whose only escape moves 255 rows down: Pillow's decoder would
    fill 255 x width bytes at once."""
    return _rle_bmp(width, 1, b"\x00\x02\x00\xff" + b"\x00\x01")


def rle_bmp_many_runs(width: int = 2000, height: int = 2000) -> bytes:
    """Every pixel its own run: Pillow decodes run-length BMPs in Python, a run at a time."""
    row = b"\x01\x80\x01\x40" * (width // 2) + b"\x00\x00"
    return _rle_bmp(width, height, row * height + b"\x00\x01")


def many_frames_gif(frames: int, size: int = 64) -> bytes:
    """An animated GIF whose frames are gray levels 0, 1, 2, ... in turn."""
    buffer = io.BytesIO()
    images = [Image.new("L", (size, size), i % 256) for i in range(frames)]
    images[0].save(buffer, "GIF", save_all=True, append_images=images[1:], duration=10)
    return buffer.getvalue()
