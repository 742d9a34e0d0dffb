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
