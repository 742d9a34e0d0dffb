"""Property-based fuzzing of the bundled models whose inputs are not images: a policy, a
generator, word vectors and the read_number pipeline with its glue models. Whatever is sent,
never INTERNAL or UNKNOWN, and each model still answers right afterwards."""

from __future__ import annotations

from collections import Counter

import grpc
import numpy as np
import pytest
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from deepserve import Client

from ..server_process import RunningServer
from .test_fuzz import EXAMPLES, call_checked, run_property


def _raw(rows: list[bytes]) -> bytes:
    return b"".join(len(w).to_bytes(4, "little") + w for w in rows)


@st.composite
def bundled_model_requests(draw: st.DrawFn) -> pb.ModelInferRequest:
    """Near-valid calls of cartpole_policy (any floats: NaN, inf), mnist_cgan (any integers as
    class and seed), word_embed (any bytes as words: not UTF-8, empty, long), word_similar
    (any floats), the read_number pipeline (any pixels, batches past what its steps take) and
    its glue models called alone (any boxes, scores and logits, shapes that disagree), batch
    sizes in and out of bounds, now and then cut short."""
    model = draw(st.sampled_from([
        "cartpole_policy", "mnist_cgan", "word_embed", "word_similar",
        "read_number", "digit_crops", "number_order",
    ]))  # fmt: skip
    rows = draw(st.sampled_from([0, 1, 1, 2, 2, 7, 65, 257]))
    request = pb.ModelInferRequest(model_name=model)
    floats = st.floats(-10, 10, width=32) if draw(st.integers(0, 2)) else st.floats(width=32)
    if model in ("read_number", "digit_crops", "number_order"):
        data = _pipeline_inputs(draw, request, model, min(rows, 9), floats)
    elif model in ("cartpole_policy", "word_similar"):
        name, width = ("observation", 4) if model == "cartpole_policy" else ("vector", 64)
        width = draw(st.sampled_from([width, width, width, width - 1, 0]))
        row = draw(st.lists(floats, min_size=width, max_size=width))
        request.inputs.add(name=name, datatype="FP32", shape=[rows, width])
        data = [np.tile(np.array(row, np.float32), (rows, 1)).tobytes()]
    elif model == "mnist_cgan":
        data = []
        for name in ("class", "seed"):
            value = draw(st.integers(-3, 12) | st.integers(-(1 << 63), (1 << 63) - 1))
            datatype = draw(st.sampled_from(["INT64", "INT64", "INT64", "INT32"]))
            request.inputs.add(name=name, datatype=datatype, shape=[rows, 1])
            data.append(np.full(rows, value, np.int64).tobytes())
    else:
        columns = draw(st.sampled_from([1, 1, 1, 2, 0]))
        word = draw(
            st.text(max_size=20).map(str.encode)
            | st.binary(max_size=40)
            | st.sampled_from([b"list", b"tuple", b"a" * 5000])
        )
        request.inputs.add(name="word", datatype="BYTES", shape=[rows, columns])
        data = [_raw([word] * (rows * columns))]
    if draw(st.integers(0, 7)) == 0:
        data[0] = data[0][: draw(st.integers(0, len(data[0])))]
    request.raw_input_contents.extend(data)
    return request


def _pipeline_inputs(draw: st.DrawFn, request, model: str, rows: int, floats) -> list[bytes]:
    """The pipeline's tensors: images of any pixels (now and then a side off by one), boxes,
    scores and logits of any floats, each with its own count of rows or detections."""
    data = []
    if model in ("read_number", "digit_crops"):
        side = draw(st.sampled_from([320, 320, 320, 319]))
        pixel = draw(st.integers(0, 255))
        request.inputs.add(name="image", datatype="UINT8", shape=[rows, side, side, 3])
        data.append(np.full((rows, side, side, 3), pixel, np.uint8).tobytes())
    if model == "digit_crops":
        detections = draw(st.sampled_from([100, 100, 3, 0]))
        for name, shape in (("boxes", [rows, detections, 4]), ("scores", [rows, detections])):
            if draw(st.integers(0, 5)) == 0:
                shape[1] = draw(st.integers(0, 120))  # a count that disagrees with the other
            value = draw(floats)
            request.inputs.add(name=name, datatype="FP32", shape=shape)
            data.append(np.full(shape, value, np.float32).tobytes())
    if model == "number_order":
        crops = rows * draw(st.sampled_from([8, 8, 8, 7]))
        for name, shape in (
            ("logits", [crops, 10]),
            ("digit_boxes", [rows, 8, 4]),
            ("digit_scores", [rows, 8]),
        ):
            value = draw(floats)
            request.inputs.add(name=name, datatype="FP32", shape=shape)
            data.append(np.full(shape, value, np.float32).tobytes())
    return data


@pytest.mark.parametrize("examples", EXAMPLES)
def test_bundled_models_never_fail_inside(bundled_server: RunningServer, examples: int) -> None:
    codes: Counter = Counter()
    with grpc.insecure_channel(bundled_server.url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        requests = bundled_model_requests()
        run_property(examples, requests, lambda r: call_checked(stub.ModelInfer, r, codes))
    print(f"bundled models fuzz, {sum(codes.values())} requests: {dict(codes.most_common())}")
    assert codes["OK"] and codes["INVALID_ARGUMENT"]
    with Client(bundled_server.url) as client:  # still serving, right
        assert client.similar(client.embed("tuple"), k=1)[0].word == "tuple"
        assert client.act([0.0, 0.0, 0.0, 0.0]).action in (0, 1)  # type: ignore[union-attr]
        assert client.generate(digit=2, n=2).shape == (2, 28, 28)
        assert client.read(np.zeros((320, 320, 3), np.uint8)).text == ""
