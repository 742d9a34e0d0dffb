"""Writes the corpus of hostile inputs beside this file: `python -m tests.corpus.make_corpus`.
Each file is one attack that once cost the server (see README.md); the replay test sends every
one of them over both transports. The files are committed, so a change to a generator does not
silently change what is replayed."""

from __future__ import annotations

import json
from pathlib import Path

from ..hostile_images import (
    many_frames_gif,
    many_scans_jpeg,
    many_strips_tiff,
    png_bomb,
    rle_bmp_many_runs,
    rle_bmp_wide_delta,
)

HERE = Path(__file__).resolve().parent
IMAGES = HERE / "images"
BODIES = HERE / "bodies"


def _nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def main() -> None:
    IMAGES.mkdir(exist_ok=True)
    BODIES.mkdir(exist_ok=True)
    images = {
        "jpeg-1000-scans.jpg": many_scans_jpeg(1000),
        "jpeg-60-scans-36mpx.jpg": many_scans_jpeg(60, 6000, 6000),
        "tiff-20000-strips.tif": many_strips_tiff(20_000),
        "bmp-rle-delta-4m-wide.bmp": rle_bmp_wide_delta(),
        "bmp-rle-delta-40m-wide.bmp": rle_bmp_wide_delta(40_000_000),
        "bmp-rle-every-pixel-a-run.bmp": rle_bmp_many_runs(300, 300),
        "gif-6000-frames.gif": many_frames_gif(6000, 16),
        "png-121-megapixels.png": png_bomb(),
    }
    for name, data in images.items():
        (IMAGES / name).write_bytes(data)
    digit = {"name": "image", "datatype": "UINT8", "shape": [1, 28, 28, 1], "data": [0] * 784}
    deep = "[" * 1000 + "1" + "]" * 1000  # json.dumps itself would recurse too deep
    compact = {"separators": (",", ":")}
    head = json.dumps({k: v for k, v in digit.items() if k != "data"}, **compact)[:-1]
    bodies = {
        "nested-1000-levels-in-data.json": f'{{"inputs":[{head},"data":{deep}}}]}}',
        "nested-1000-levels-document.json": deep,
        "inputs-not-a-list.json": json.dumps({"inputs": 5}),
        "input-name-a-list.json": json.dumps({"inputs": [{**digit, "name": ["image"]}]}),
        "shape-of-strings.json": json.dumps({"inputs": [{**digit, "shape": ["1", "28"]}]}),
        "outputs-a-string.json": json.dumps({"inputs": [digit], "outputs": "logits"}),
        "parameters-a-list.json": json.dumps({"inputs": [digit], "parameters": [1, 2]}),
        "load-config-nested.json": json.dumps({"parameters": {"config": deep}}),
    }
    for name, text in bodies.items():
        (BODIES / name).write_text(text)
    paths = [
        "/v2/models/mnist/versions/" + "9" * 5000,
        "/v2/models/mnist/versions/%C2%B9",  # superscript one: str.isdigit says it is a digit
        "/v2/models/mnist/versions/-1",
        "/v2/models/mnist/versions/1e3/config",
        "/v2/models/" + "m" * 70_000,
        "/v2/models/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/v1/models/mnist/classify?top_k=" + "9" * 400,
    ]
    (HERE / "paths.txt").write_text("\n".join(paths) + "\n")


if __name__ == "__main__":
    main()
