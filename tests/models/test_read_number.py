"""The bundled read_number pipeline served: house numbers read in one call over gRPC
(tritonclient), HTTP (tritonclient), the Vision API's Read on both transports, the SDK (sync
and async) and the command line, answering as the four models run by hand in ONNX Runtime
would; each step counted in its own model's statistics; bad calls answered naming what was
wrong (the tensor, or the step and its limit), never INTERNAL."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.http as triton_http
from PIL import Image
from tritonclient.utils import InferenceServerException

from deepserve import AsyncClient, Client, DeepserveError
from deepserve.training.number_scenes import make_number_scenes
from deepserve.training.read_number import Chain

from ..mnist_sample import digits
from ..server_process import RunningServer

MODELS = Path(__file__).resolve().parents[2] / "models"
STEPS = ("ssd", "digit_crops", "mnist", "number_order")


@pytest.fixture(scope="module")
def scenes():
    images, labels = digits()
    return make_number_scenes(images, labels, 12, seed=3)


def _png(pixels: np.ndarray, scale: int = 1) -> bytes:
    picture = Image.fromarray(pixels)
    if scale != 1:
        picture = picture.resize((pixels.shape[1] * scale, pixels.shape[0] * scale))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _counts(client: triton.InferenceServerClient) -> dict[str, int]:
    return {
        name: client.get_inference_statistics(name).model_stats[0].inference_stats.success.count
        for name in ("read_number", *STEPS)
    }


def test_the_pipeline_reads_as_its_models_do(bundled_server: RunningServer, scenes: list) -> None:
    images = np.stack([s.image for s in scenes[:4]])
    by_hand = Chain(MODELS)(images)
    client = triton.InferenceServerClient(bundled_server.url)
    before = _counts(client)
    given = triton.InferInput("image", list(images.shape), "UINT8")
    given.set_data_from_numpy(images)
    answer = client.infer("read_number", [given])
    number = [n.decode() for n in answer.as_numpy("number")]
    assert number == by_hand
    assert sum(n == s.text for n, s in zip(number, scenes, strict=False)) >= 3, number
    count = answer.as_numpy("count")
    boxes = answer.as_numpy("boxes")
    assert count.tolist() == [len(n) for n in number]
    for row, n in zip(boxes, count, strict=True):
        lefts = row[:n, 0]
        assert (np.diff(lefts) > 0).all() and not row[n:].any()  # left to right, then zeros
    after = _counts(client)
    assert after["read_number"] == before["read_number"] + 1
    for step in STEPS:  # each step ran once for the call, in its own model
        assert after[step] >= before[step] + 1, step
    # HTTP's tensor API answers the same.
    http = triton_http.InferenceServerClient(f"127.0.0.1:{bundled_server.http_port}")
    given_http = triton_http.InferInput("image", list(images.shape), "UINT8")
    given_http.set_data_from_numpy(images, binary_data=True)
    over_http = http.infer("read_number", [given_http])
    assert [n.decode() for n in over_http.as_numpy("number")] == by_hand
    metadata = client.get_model_metadata("read_number")
    assert metadata.platform == "ensemble"
    # Prometheus: the ensemble and each step, each with its own rows.
    scrape = f"http://127.0.0.1:{bundled_server.metrics_port}/metrics"
    with urllib.request.urlopen(scrape, timeout=30) as response:
        metrics = response.read().decode()
    for name in ("read_number", *STEPS):
        assert f'deepserve_queue_size{{model="{name}",version="1"}}' in metrics, name


def test_read_over_the_vision_api_the_sdk_and_the_cli(
    bundled_server: RunningServer, scenes: list, tmp_path: Path
) -> None:
    scene = next(s for s in scenes if Chain(MODELS)(s.image[None])[0] == s.text)
    # Twice the size: the boxes come back in the picture's own pixels.
    png = _png(scene.image, scale=2)
    with Client(bundled_server.url) as client:
        reading = client.read(png)
        both = client.read([png, _png(scene.image)])
    assert reading.text == scene.text
    assert [c.text for c in reading.characters] == list(scene.text)
    for character, truth in zip(reading.characters, scene.boxes * 2, strict=True):
        got = np.array(character.box.as_tuple())
        assert np.abs(got - truth).max() < 12, (got, truth)
        assert 0 < character.score <= 1
    assert [r.text for r in both] == [scene.text, scene.text]

    async def read_async() -> str:
        async with AsyncClient(bundled_server.url) as client:
            return (await client.read(png)).text

    assert asyncio.run(read_async()) == scene.text
    request = urllib.request.Request(
        f"http://127.0.0.1:{bundled_server.http_port}/v1/models/read_number/read",
        data=png,
        headers={"Content-Type": "image/png"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.load(response)
    assert answer["results"][0]["text"] == scene.text
    assert len(answer["results"][0]["characters"]) == len(scene.text)
    picture = tmp_path / "house.png"
    picture.write_bytes(png)
    drawn = tmp_path / "drawn.png"
    result = subprocess.run(
        [sys.executable, "-m", "deepserve.cli", "read-number", str(picture), "--out", str(drawn),
         "--url", bundled_server.url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"house.png: {scene.text}" in result.stdout
    assert Image.open(drawn).size == (640, 640)


def test_bad_calls_name_what_was_wrong(bundled_server: RunningServer, scenes: list) -> None:
    client = triton.InferenceServerClient(bundled_server.url)

    def call(array: np.ndarray, datatype: str = "UINT8") -> str:
        given = triton.InferInput("image", list(array.shape), datatype)
        given.set_data_from_numpy(array)
        with pytest.raises(InferenceServerException) as raised:
            client.infer("read_number", [given])
        assert raised.value.status() == "StatusCode.INVALID_ARGUMENT", raised.value.message()
        return raised.value.message()

    image = scenes[0].image
    assert "dims" in call(np.zeros((1, 320, 319, 3), np.uint8)) or "shape" in call(
        np.zeros((1, 320, 319, 3), np.uint8)
    )
    assert "FP32" in call(np.zeros((1, 320, 320, 3), np.float32), "FP32")
    # More digits in one call than the classifier step takes at once, said so.
    many = next(s.image for s in scenes if len(s.text) >= 4)
    message = call(np.stack([many] * 20))
    assert "step 3" in message and "mnist" in message and "64" in message, message
    # More pictures than the detector takes at once, said so.
    message = call(np.stack([image] * 33))
    assert "step 1" in message and "ssd" in message and "32" in message, message
    with Client(bundled_server.url) as sdk:
        with pytest.raises(DeepserveError) as raised:
            sdk.read(b"not a picture")
        assert "image" in str(raised.value).lower()
        assert sdk.read(image).text  # still serving
    request = urllib.request.Request(
        f"http://127.0.0.1:{bundled_server.http_port}/v1/models/read_number/read",
        data=b"GIF89a broken",
        headers={"Content-Type": "image/gif"},
    )
    with pytest.raises(urllib.error.HTTPError) as http_error:
        urllib.request.urlopen(request, timeout=30)
    assert http_error.value.code == 400
