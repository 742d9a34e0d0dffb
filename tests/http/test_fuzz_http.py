"""Property-based fuzzing of the HTTP port: random JSON and binary infer bodies, random headers,
random images and query strings for the Vision API, shared memory calls and the regions infer
requests name. Never a 500, never a server path, and the
server answers correctly afterwards. `pytest -m fuzz_long` runs thousands of examples."""

from __future__ import annotations

import gzip
import http.client
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.utils.shared_memory as shm
from hypothesis import strategies as st

from ..grpc.test_fuzz import CI_EXAMPLES, EXAMPLES, run_property
from ..hostile_images import FORMATS, encoded
from ..server_process import RunningServer, free_port, run_server

ROOT = Path(__file__).resolve().parents[2]
DATATYPES = ["UINT8", "INT32", "FP32", "FP16", "BYTES", "BOOL", "INT64", "nope", ""]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(1 << 70), 1 << 70)
    | st.floats()
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def infer_calls(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    model = draw(st.sampled_from(["mnist", "mnist", "ssd", "segmentation", "nope"]))
    tensor: dict[str, Any] = {
        "name": draw(st.sampled_from(["image", "image", "x", ""])),
        "datatype": draw(st.sampled_from(DATATYPES)),
        "shape": draw(st.lists(st.integers(-2, 40), max_size=5)),
    }
    binary = b""
    headers = {"Content-Type": "application/json"}
    if draw(st.integers(0, 3)) == 0:  # a well-formed digit, so some calls get through
        tensor |= {"name": "image", "datatype": "UINT8", "shape": [1, 28, 28, 1]}
        binary = draw(st.binary(min_size=784, max_size=784))
        tensor["parameters"] = {"binary_data_size": 784}
    elif draw(st.booleans()):
        binary = draw(st.binary(max_size=4096))
        tensor["parameters"] = {"binary_data_size": draw(st.integers(-5, len(binary) + 5))}
    else:
        tensor["data"] = draw(json_values)
    document: Any = {"inputs": [tensor]}
    if draw(st.booleans()):
        document["outputs"] = [
            {"name": draw(st.sampled_from(["logits", "y"])),
             "parameters": {"classification": draw(json_values)}}
        ]  # fmt: skip
    if draw(st.integers(0, 5)) == 0:  # the sequence model, with its controls fuzzed
        controls: dict[str, Any] = {
            "sequence_id": draw(st.sampled_from([1, 2, 0, -1, "a", 1 << 64, 1.5, True]))
        }
        for flag in ("sequence_start", "sequence_end"):
            if draw(st.booleans()):
                controls[flag] = draw(st.booleans() | json_values)
        row = draw(st.lists(st.integers(0, 255), min_size=28, max_size=28))
        document = {
            "inputs": [{"name": "rows", "datatype": "UINT8", "shape": [1, 1, 28], "data": row}],
            "parameters": controls,
        }
        model = "lstm_reader"
    if draw(st.integers(0, 5)) == 0:  # the policy, with observations that may not be numbers
        rows = draw(st.integers(0, 3))
        values = draw(st.lists(st.floats(width=32), min_size=rows * 4, max_size=rows * 4))
        observation = {"name": "observation", "datatype": "FP32", "shape": [rows, 4]}
        if draw(st.booleans()):
            observation["data"] = values
            binary = b""
        else:
            binary = np.array(values, np.float32).tobytes()
            observation["parameters"] = {"binary_data_size": len(binary)}
        document = {"inputs": [observation]}
        model = "cartpole_policy"
    if draw(st.integers(0, 5)) == 0:  # the GAN, with class ids and seeds of any size
        rows = draw(st.integers(0, 3))
        values = st.integers(-(1 << 64), 1 << 64) | st.integers(-2, 12)
        document = {
            "inputs": [
                {"name": name, "datatype": draw(st.sampled_from(["INT64", "INT64", "INT32"])),
                 "shape": [rows, 1], "data": draw(st.lists(values, min_size=rows, max_size=rows))}
                for name in ("class", "seed")
            ]
        }  # fmt: skip
        binary = b""
        model = "mnist_cgan"
    if draw(st.integers(0, 5)) == 0:  # the word models: any strings, any numbers
        rows = draw(st.sampled_from([0, 1, 2, 3, 257]))
        if draw(st.booleans()):
            words = st.text(max_size=12) | st.sampled_from(["list", "tuple"]) | json_values
            tensor = {
                "name": "word",
                "datatype": "BYTES",
                "shape": [rows, 1],
                "data": draw(st.lists(words, min_size=min(rows, 9), max_size=min(rows, 9))),
            }
            model = "word_embed"
        else:
            width = draw(st.sampled_from([64, 64, 3]))
            row = draw(st.lists(st.floats(width=32), min_size=width, max_size=width))
            tensor = {"name": "vector", "datatype": "FP32", "shape": [rows, 64], "data": row * rows}
            model = "word_similar"
        document = {"inputs": [tensor]}
        binary = b""
    if draw(st.integers(0, 9)) == 0:
        document = draw(json_values)
    flaw = draw(st.sampled_from(["none"] * 6 + ["wrong_type", "nested"]))
    if flaw == "wrong_type":  # a field of the protocol given another JSON type
        target = draw(st.sampled_from(["inputs", "outputs", "parameters", "name", "shape"]))
        holder = document if target in ("inputs", "outputs", "parameters") else tensor
        if isinstance(holder, dict):
            holder[target] = draw(json_values)
    head = json.dumps(document).encode()
    if flaw == "nested":  # deeper than any parser should recurse, somewhere in the document
        depth = draw(st.integers(1, 3000))
        place = draw(st.sampled_from(["document", "data"]))
        deep = b"[" * depth + b"1" + b"]" * depth
        head = (
            deep
            if place == "document"
            else head.replace(b'"shape"', b'"x":' + deep + b',"shape"', 1)
        )
    if binary or draw(st.booleans()):
        headers["Inference-Header-Content-Length"] = draw(
            st.sampled_from([str(len(head))] * 4 + [str(len(head) + 3), "-1", "x", "0"])
        )
    body = head + binary
    if draw(st.integers(0, 7)) == 0:  # compressed: the server takes bodies as sent, never inflates
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    if draw(st.integers(0, 7)) == 0:  # a head past its limit (64 KiB) or just under it
        headers["X-Padding"] = "a" * draw(st.sampled_from([100, 60_000, 70_000, 200_000]))
    return f"/v2/models/{model}/infer", body, headers


@st.composite
def vision_calls(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    task, model = draw(
        st.sampled_from([("classify", "mnist"), ("detect", "ssd"), ("segment", "segmentation"),
                         ("classify", "ssd"), ("segment", "nope")])
    )  # fmt: skip
    query = draw(
        st.sampled_from(["", "?top_k=3", "?top_k=-1", "?top_k=x", "?mask=rle", "?mask=png",
                         "?mask=zzz", "?score_threshold=nan", "?max_detections=99999999999"])
    )  # fmt: skip
    data = bytearray(encoded(draw(st.sampled_from(FORMATS)), draw(st.integers(1, 64)), 32))
    if draw(st.integers(0, 2)) == 0:
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.integers(0, 2)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    if draw(st.booleans()):
        boundary = "fuzzboundary"
        field = draw(st.sampled_from(["image", "image", "photo"]))
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
                'filename="x.png"\r\nContent-Type: image/png\r\n\r\n'
            ).encode()
            + bytes(data)
            + f"\r\n--{boundary}--\r\n".encode()
        )
        if draw(st.integers(0, 4)) == 0:
            body = body[: draw(st.integers(0, len(body)))]  # a broken form
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    else:
        body, headers = bytes(data), {"Content-Type": "image/png"}
    return f"/v1/models/{model}/{task}{query}", body, headers


def _post(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _check(port: int, call: tuple[str, bytes, dict[str, str]], codes: Counter) -> bytes:
    try:
        status, body = _post(port, *call)
    except (ConnectionResetError, BrokenPipeError):
        # A head past the limit is answered 431 and the connection closed while the client
        # may still be sending: what it reads then is the reset, not the answer.
        assert len(call[2].get("X-Padding", "")) > 64 * 1024, call[0]
        codes["reset"] += 1
        return b""
    codes[status] += 1
    assert status < 500 or status == 503, (call[0], status, body[:300])
    assert b"/tmp/" not in body and str(ROOT).encode() not in body
    return body


@pytest.mark.parametrize("examples", EXAMPLES)
def test_http_never_fails_inside(bundled_server: RunningServer, examples: int) -> None:
    port = bundled_server.http_port
    for name, strategy in (("infer", infer_calls()), ("vision", vision_calls())):
        codes: Counter = Counter()
        run_property(examples if examples != CI_EXAMPLES else 100, strategy,
                     lambda call, codes=codes: _check(port, call, codes))  # fmt: skip
        print(f"HTTP {name} fuzz, {sum(codes.values())} requests: {dict(codes.most_common())}")
    status, body = _post(
        port, "/v1/models/mnist/classify", (ROOT / "docs/images/digit-7.png").read_bytes(),
        {"Content-Type": "image/png"},
    )  # fmt: skip
    assert status == 200 and json.loads(body)["results"][0]["labels"][0]["label"] == "7"


@pytest.mark.parametrize("value", ["null", "5", "1000000000", "[1]"])
def test_bytes_data_that_is_not_text_is_a_400_naming_the_input(
    bundled_server: RunningServer, value: str
) -> None:
    """Found by the fuzz: null as a BYTES element was a TypeError (500); a number would have
    been that many zero bytes."""
    tensor = f'{{"name": "word", "datatype": "BYTES", "shape": [1, 1], "data": [{value}]}}'
    body = f'{{"inputs": [{tensor}]}}'
    status, answer = _post(bundled_server.http_port, "/v2/models/word_embed/infer", body.encode(),
                           {"Content-Type": "application/json"})  # fmt: skip
    assert status == 400, answer
    assert b"input 'word': BYTES values must be strings" in answer


# ---- system shared memory ---------------------------------------------------------------------

DIGIT_BYTES = 28 * 28
LOGITS_BYTES = 10 * 4


@pytest.fixture(scope="module")
def shm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, str]]:
    """The bundled models with shared memory on, and a real POSIX region's key: an input
    region (a digit) and room for the logits after it."""
    http_port = free_port()
    with run_server(
        ROOT / "models",
        tmp_path_factory.mktemp("shm-fuzz"),
        "--http-port",
        str(http_port),
        "--shared-memory",
        "on",
    ) as running:
        running.http_port = http_port
        key = f"/deepserve-fuzz-{uuid.uuid4().hex[:8]}"
        handle = shm.create_shared_memory_region("fuzz", key, DIGIT_BYTES + LOGITS_BYTES)
        try:
            shm.set_shared_memory_region(handle, [np.zeros((1, 28, 28, 1), np.uint8)])
            yield running, key
        finally:
            shm.destroy_shared_memory_region(handle)


def _json_or(draw: st.DrawFn, usual: list[Any]) -> Any:
    """Mostly a value the protocol might see, sometimes any JSON value at all."""
    return draw(st.sampled_from(usual) | json_values)


@st.composite
def shm_calls(draw: st.DrawFn, key: str) -> tuple[str, bytes, dict[str, str]]:
    """Register, unregister and infer calls that name regions, sizes and offsets."""
    headers = {"Content-Type": "application/json"}
    region = draw(st.sampled_from(["fuzz", "fuzz", "absent", "", "a" * 300, "x%2F..%2Fy"]))
    kind = draw(st.sampled_from(["register", "register", "unregister", "infer", "infer"]))
    if kind == "register":
        document: Any = {
            "key": _json_or(draw, [key, "/deepserve-absent", "/../../etc/passwd", "", "x"]),
            "offset": _json_or(draw, [0, 1, -1, 1 << 40]),
            "byte_size": _json_or(draw, [DIGIT_BYTES, 0, -1, 1 << 40, 1 << 62]),
        }
        if draw(st.integers(0, 5)) == 0:
            document = draw(json_values)
        name = region or "r"
        return (
            f"/v2/systemsharedmemory/region/{name}/register",
            json.dumps(document).encode(),
            headers,
        )
    if kind == "unregister":  # never every region, nor the fuzzed one: later calls need them
        name = draw(st.sampled_from(["absent", "other", "a" * 300]))
        return f"/v2/systemsharedmemory/region/{name}/unregister", b"", headers
    image: dict[str, Any] = {"name": "image", "datatype": "UINT8", "shape": [1, 28, 28, 1]}
    image["parameters"] = {
        "shared_memory_region": _json_or(draw, [region]),
        "shared_memory_byte_size": _json_or(draw, [DIGIT_BYTES, DIGIT_BYTES - 1, 0, -1, 1 << 62]),
    }
    if draw(st.booleans()):
        image["parameters"]["shared_memory_offset"] = _json_or(draw, [0, 1, -8, 1 << 63])
    document = {"inputs": [image]}
    if draw(st.booleans()):
        document["outputs"] = [
            {"name": "logits", "parameters": {
                "shared_memory_region": _json_or(draw, ["fuzz", "absent"]),
                "shared_memory_byte_size": _json_or(draw, [LOGITS_BYTES, LOGITS_BYTES - 1, 0]),
                "shared_memory_offset": _json_or(draw, [DIGIT_BYTES, 0, 1 << 40, -4]),
            }}
        ]  # fmt: skip
    return "/v2/models/mnist/infer", json.dumps(document).encode(), headers


def test_http_shared_memory_never_fails_inside(shm_server: tuple[RunningServer, str]) -> None:
    server, key = shm_server
    port = server.http_port
    codes: Counter = Counter()
    run_property(CI_EXAMPLES, shm_calls(key), lambda call: _check(port, call, codes))
    print(f"HTTP shared memory fuzz, {sum(codes.values())} requests: {dict(codes.most_common())}")
    # The region still works: registered (again, if a fuzzed call replaced it), then used.
    _post(port, "/v2/systemsharedmemory/region/fuzz/unregister", b"", {})
    register = {"key": key, "offset": 0, "byte_size": DIGIT_BYTES + LOGITS_BYTES}
    status, body = _post(
        port, "/v2/systemsharedmemory/region/fuzz/register", json.dumps(register).encode(), {}
    )
    assert status == 200, body
    document = {
        "inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, 28, 28, 1], "parameters": {
            "shared_memory_region": "fuzz", "shared_memory_byte_size": DIGIT_BYTES}}],
        "outputs": [{"name": "logits", "parameters": {
            "shared_memory_region": "fuzz", "shared_memory_byte_size": LOGITS_BYTES,
            "shared_memory_offset": DIGIT_BYTES}}],
    }  # fmt: skip
    status, body = _post(port, "/v2/models/mnist/infer", json.dumps(document).encode(), {})
    assert status == 200, body
    assert json.loads(body)["outputs"][0]["parameters"]["shared_memory_region"] == "fuzz"


# ---- the generate extension: the date translator's inputs fuzzed ----------------------------


@st.composite
def generate_calls(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    """generate / generate_stream bodies: the translator's inputs with values of every JSON
    type, lengths past its 40 bytes, odd text, unknown keys, ids and parameters."""
    route = draw(st.sampled_from(["generate", "generate_stream", "generate_stream", "infer"]))
    texts = ["3rd of May 1979", "", "x" * 41, "\u00e9\u00e9" * 20, "a\u0000b", "\ud7ff" * 3]
    document: Any = {"text_input": _json_or(draw, [*texts, draw(st.text(max_size=60))])}
    if draw(st.booleans()):
        document["stream"] = _json_or(draw, [True, False, 1, "yes"])
    if draw(st.booleans()):
        document["max_tokens"] = _json_or(draw, [1, 11, 0, -3, 12, 1 << 40, 2.5])
    if draw(st.integers(0, 3)) == 0:
        document[draw(st.sampled_from(["id", "parameters", "text", "", "outputs"]))] = draw(
            json_values
        )
    if draw(st.integers(0, 6)) == 0:
        document = draw(json_values)
    body = json.dumps(document).encode()
    return f"/v2/models/date_translator/{route}", body, {"Content-Type": "application/json"}


def test_http_generate_never_fails_inside(bundled_server: RunningServer) -> None:
    port = bundled_server.http_port
    codes: Counter = Counter()

    def check(call: tuple[str, bytes, dict[str, str]]) -> None:
        body = _check(port, call, codes)
        assert b'"status":500' not in body, body[:300]  # no failure inside a stream either

    run_property(CI_EXAMPLES, generate_calls(), check)
    print(f"HTTP generate fuzz, {sum(codes.values())} requests: {dict(codes.most_common())}")
    status, body = _post(
        port, "/v2/models/date_translator/generate", b'{"text_input": "05/03/79"}', {}
    )
    assert status == 200 and json.loads(body)["text_output"] == "1979-05-03"
