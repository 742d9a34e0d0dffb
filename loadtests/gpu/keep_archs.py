"""Blank the GPU code a wheel carries for GPUs other than the host's, so the bundle shrinks.

onnxruntime-gpu's CUDA provider holds its kernels as machine code for every GPU generation
it supports (sm_75 ... sm_120), two thirds of its 284 MB. The CUDA driver loads only the
entry built for the GPU it runs on, so the entries for other generations are zeroed in
place: every header, offset and size stays as it was (the file is still a valid library of
the same length), and the zeros cost almost nothing once the bundle is xz-compressed.

    python loadtests/gpu/keep_archs.py WHEEL --archs 90     # H100 / H200 (sm_90)

A library so thinned runs only on the generations kept: the bundle is for one host class.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import shutil
import struct
import tempfile
import zipfile
from pathlib import Path

FATBIN_SECTION = b".nv_fatbin"
FATBIN_MAGIC = 0xBA55ED50
# A fat binary: magic (u32), version (u16), header size (u16), size of its entries (u64).
FATBIN_HEADER = struct.Struct("<IHHQ")
# An entry: kind (u16), version (u16), header size (u32), payload size (u64); its target
# architecture (u32, e.g. 90 for sm_90) sits 28 bytes into the entry's header.
ENTRY_HEADER = struct.Struct("<HHIQ")
ENTRY_ARCH_OFFSET = 28


def fatbin_section(image: bytes) -> tuple[int, int]:
    """(file offset, size) of the ELF64 section holding the fat binaries, or (0, 0)."""
    if image[:4] != b"\x7fELF" or image[4] != 2:
        return 0, 0
    (section_table,) = struct.unpack_from("<Q", image, 0x28)
    entry_size, count, names_index = struct.unpack_from("<HHH", image, 0x3A)

    def section(index: int) -> tuple[int, int, int]:
        name, _type, _flags, _addr, offset, size = struct.unpack_from(
            "<IIQQQQ", image, section_table + index * entry_size
        )
        return name, offset, size

    _, names_offset, _ = section(names_index)
    for index in range(count):
        name, offset, size = section(index)
        end = image.index(b"\0", names_offset + name)
        if image[names_offset + name : end] == FATBIN_SECTION:
            return offset, size
    return 0, 0


def blank_other_archs(image: bytearray, keep: set[int]) -> dict[int, int]:
    """Zero the payload of every entry whose architecture is not in `keep`; returns the
    bytes kept and blanked per architecture (kept ones positive, blanked negative)."""
    start, size = fatbin_section(bytes(image))
    tally: dict[int, int] = {}
    position, end = start, start + size
    while position < end:
        magic, _version, header_size, entries_size = FATBIN_HEADER.unpack_from(image, position)
        if magic != FATBIN_MAGIC:
            position += 8  # alignment between fat binaries
            continue
        entry, entries_end = position + header_size, position + header_size + entries_size
        while entry < entries_end:
            _kind, _version, entry_header, payload = ENTRY_HEADER.unpack_from(image, entry)
            (arch,) = struct.unpack_from("<I", image, entry + ENTRY_ARCH_OFFSET)
            body = entry + entry_header
            if arch in keep:
                tally[arch] = tally.get(arch, 0) + payload
            else:
                image[body : body + payload] = bytes(payload)
                tally[arch] = tally.get(arch, 0) - payload
            entry = body + payload
        position = entries_end
    return tally


def rewrite_record(record: str, changed: dict[str, bytes]) -> str:
    """The wheel's RECORD with the hash and size of each changed file brought up to date."""
    newline = "\r\n" if "\r\n" in record else "\n"
    lines = []
    for line in record.splitlines():
        name = line.split(",", 1)[0]
        if name in changed:
            digest = hashlib.sha256(changed[name]).digest()
            encoded = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            line = f"{name},sha256={encoded},{len(changed[name])}"
        lines.append(line)
    return newline.join(lines) + newline


def thin_wheel(wheel: Path, keep: set[int]) -> None:
    """Rewrite `wheel` with its shared libraries' other-architecture code zeroed (stored
    uncompressed, as the bundle keeps every wheel)."""
    with tempfile.TemporaryDirectory() as scratch:
        thinned = Path(scratch) / wheel.name
        changed: dict[str, bytes] = {}
        with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(thinned, "w") as out:
            # RECORD comes last in a wheel, after the libraries whose hashes change.
            for info in source.infolist():
                data = source.read(info)
                if info.filename.endswith(".so") and FATBIN_SECTION in data:
                    image = bytearray(data)
                    tally = blank_other_archs(image, keep)
                    if not any(arch in keep for arch in tally):
                        raise SystemExit(f"{info.filename}: no code for sm_{sorted(keep)}")
                    summary = ", ".join(
                        f"sm_{arch} {'kept' if size > 0 else 'blanked'} {abs(size) / 1e6:.0f} MB"
                        for arch, size in sorted(tally.items())
                    )
                    print(f"{info.filename}: {summary}")
                    data = bytes(image)
                    changed[info.filename] = data
                info.compress_type = zipfile.ZIP_STORED
                if info.filename.endswith(".dist-info/RECORD"):
                    data = rewrite_record(data.decode(), changed).encode()
                out.writestr(info, data)
        shutil.move(thinned, wheel)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path)
    parser.add_argument("--archs", default="90", help="compute capabilities to keep, e.g. 90,80")
    args = parser.parse_args()
    thin_wheel(args.wheel, {int(arch) for arch in args.archs.split(",")})


if __name__ == "__main__":
    main()
