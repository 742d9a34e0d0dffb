"""The Vision API over HTTP on the committed models: the README's curl examples run as written,
images as the body or as form fields, masks as PNG and RLE equal to the gRPC API's, and
client mistakes answered with the right status and a message."""

from __future__ import annotations

import base64
import io
import json
import re
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepserve import Client

from ..hostile_images import png_bomb
from ..server_process import RunningServer

ROOT = Path(__file__).resolve().parents[2]
V1 = "localhost:8000/v1/models"


def _curl(server: RunningServer, *args: str) -> tuple[int, dict]:
    command = [
        "curl", "-s", "-w", "\n%{http_code}", *args
    ]  # fmt: skip
    command = [a.replace("localhost:8000", f"127.0.0.1:{server.http_port}") for a in command]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    body, _, status = result.stdout.rpartition("\n")
    return int(status), json.loads(body)


def test_the_readmes_curl_examples_run_as_written(bundled_server: RunningServer) -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- curl -->\n```sh\n(.*?)```", readme, re.S).group(1)
    answers = []
    for line in block.strip().splitlines():
        arguments = shlex.split(line)
        assert arguments[0] == "curl"
        status, answer = _curl(bundled_server, *arguments[1:])
        assert status == 200, (line, answer)
        answers.append(answer)
    classify, detect, segment, metadata = answers
    labels = [x["label"] for x in classify["results"][0]["labels"]]
    assert labels[0] == "7" and len(labels) == 2  # top_k=2: the runner-up is the model's guess
    assert classify["results"][0]["labels"][0]["score"] > 0.99
    assert len(detect["results"][0]["detections"]) >= 3
    counts = segment["results"][0]["counts"]
    assert sum(n for _, n in counts) == 320 * 320
    assert metadata["name"] == "mnist" and metadata["inputs"][0]["datatype"] == "UINT8"


def test_masks_over_http_equal_the_grpc_api(bundled_server: RunningServer) -> None:
    scene = "@docs/images/scene.png"
    status, as_png = _curl(
        bundled_server, "-F", f"image={scene}", "-F", f"image={scene}",
        "localhost:8000/v1/models/segmentation/segment",
    )  # fmt: skip
    assert status == 200 and len(as_png["results"]) == 2
    status, as_rle = _curl(
        bundled_server,
        "-F",
        f"image={scene}",
        "localhost:8000/v1/models/segmentation/segment?mask=rle",
    )
    with Client(bundled_server.url) as client:
        expected = client.segment(str(ROOT / "docs/images/scene.png"), model="segmentation").mask
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(as_png["results"][0]["mask"]))))
    np.testing.assert_array_equal(decoded, expected)
    runs = as_rle["results"][0]["counts"]
    expanded = np.concatenate([np.full(n, value, np.uint8) for value, n in runs])
    np.testing.assert_array_equal(expanded.reshape(expected.shape), expected)
    assert as_png["results"][0]["labels"][0] == "background"


@pytest.mark.parametrize(
    ("args", "status", "fragment"),
    [
        (["-F", "image=@docs/images/digit-7.png", "localhost:8000/v1/models/nope/classify"],
         404, "unknown model 'nope'"),
        (["-F", "image=@docs/images/digit-7.png", "localhost:8000/v1/models/mnist/detect"],
         400, "model 'mnist' does classification, not detection"),
        (["-X", "POST", "localhost:8000/v1/models/mnist/classify"], 400, "no image"),
        (["-F", "photo=@docs/images/digit-7.png", "localhost:8000/v1/models/mnist/classify"],
         400, "no 'image' field"),
        (["--data-binary", "not an image", "localhost:8000/v1/models/mnist/classify"],
         400, "not an image in a format this server decodes"),
        (["-F", "image=@docs/images/digit-7.png", f"{V1}/mnist/classify?top_k=x"],
         400, "'top_k' must be a int"),
        (["-F", "image=@docs/images/scene.png", f"{V1}/segmentation/segment?mask=jpeg"],
         400, "'mask' must be one of"),
    ],
)  # fmt: skip
def test_client_mistakes_over_http(bundled_server: RunningServer, args, status, fragment) -> None:
    code, answer = _curl(bundled_server, *args)
    assert code == status, answer
    assert fragment in answer["error"] and "(request id " in answer["error"]


def test_a_bomb_over_http_is_refused_from_its_header(
    bundled_server: RunningServer, tmp_path
) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb())
    code, answer = _curl(
        bundled_server, "--data-binary", f"@{bomb}", "localhost:8000/v1/models/mnist/classify"
    )
    assert code == 400 and "max_image_pixels" in answer["error"]


def test_answers_carry_latency_and_batch_size(bundled_server: RunningServer) -> None:
    code, answer = _curl(
        bundled_server,
        "-F",
        "image=@docs/images/digit-7.png",
        "localhost:8000/v1/models/mnist/classify",
    )
    assert code == 200
    assert answer["server_ms"] > 0 and answer["batch_size"] >= 1
    assert answer["average_batch_size"] >= 1
    code, listed = _curl(bundled_server, "localhost:8000/v1/models")
    tasks = {m["name"]: m["task"] for m in listed["models"]}
    assert tasks["ssd"] == "detection" and tasks["segmentation"] == "segmentation"


def test_openapi_is_served_describes_every_route_and_matches_the_docs(
    bundled_server: RunningServer,
) -> None:
    import urllib.request

    from deepserve.server.http.openapi import spec

    url = f"http://127.0.0.1:{bundled_server.http_port}/openapi.json"
    with urllib.request.urlopen(url, timeout=10) as response:
        served = json.loads(response.read())
    assert served == spec()
    assert served == json.loads((ROOT / "docs" / "openapi.json").read_text()), (
        "regenerate: python -m deepserve.server.http.openapi > docs/openapi.json"
    )
    for path in (
        "/v2/models/{model}/infer",
        "/v2/models/{model}/versions/{version}/infer",
        "/v1/models/{model}/classify",
        "/v1/models/{model}/segment",
        "/v2/repository/models/{model}/load",
    ):
        assert path in served["paths"], path
    segment = served["paths"]["/v1/models/{model}/segment"]["post"]
    assert "multipart/form-data" in segment["requestBody"]["content"]


def test_every_http_route_is_in_the_openapi_description() -> None:
    from deepserve.server.http.calls import CallWrapper
    from deepserve.server.http.openapi import spec
    from deepserve.server.http.v2 import V2Routes, build_app
    from deepserve.server.http.vision import VisionRoutes

    calls = CallWrapper(None, None)  # routes are only listed, never called
    v2 = V2Routes(None, None, None, None, calls)
    app = build_app(v2, VisionRoutes(None, calls, 0).routes())
    routes = {route.path for route in app.routes} - {"/openapi.json", "/", "/ui"}
    assert routes == set(spec()["paths"])
