"""Property-based fuzzing (hypothesis) of request paths against real servers: ModelInfer with
random shapes, datatypes, byte lengths and typed contents; the Vision RPCs with corrupt,
truncated and oversized images of every format and wrong parameters (config overrides and the
bundled models of other shapes: test_fuzz_config, test_fuzz_bundled). Whatever is sent, the
answer is never INTERNAL or UNKNOWN, and the server keeps answering correctly. CI runs a
bounded number of examples; `pytest -m fuzz_long` runs thousands."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.utils.shared_memory as shm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from deepserve.v1 import vision_pb2 as vpb
from deepserve.v1 import vision_pb2_grpc as vpb_grpc

from ..hostile_images import (
    FORMATS,
    broken_chunk_length_png,
    encoded,
    many_frames_gif,
    many_scans_jpeg,
    many_strips_tiff,
    rle_bmp_many_runs,
    rle_bmp_wide_delta,
)
from ..server_process import RunningServer

CI_EXAMPLES = int(os.environ.get("DEEPSERVE_FUZZ_EXAMPLES", "120"))
LONG_EXAMPLES = 3000
EXAMPLES = [
    pytest.param(CI_EXAMPLES, id="ci"),
    pytest.param(LONG_EXAMPLES, id="long", marks=pytest.mark.fuzz_long),
]
SERVER_FAULTS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
             "FP16", "FP32", "FP64", "BYTES", "BF16", "", "fp32", "STRING"]  # fmt: skip
ROOT = Path(__file__).resolve().parents[2]
DIGIT = (ROOT / "docs" / "images" / "digit-7.png").read_bytes()


def run_property(examples: int, strategy: st.SearchStrategy, check: Callable[[Any], None]) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=examples == CI_EXAMPLES,  # CI: the same examples every run
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def prop(value: Any) -> None:
        check(value)

    prop()


def call_checked(rpc: Callable[..., Any], request: Any, codes: Counter) -> None:
    try:
        rpc(request, timeout=60)
        codes["OK"] += 1
    except grpc.RpcError as error:
        codes[error.code().name] += 1
        assert error.code() not in SERVER_FAULTS, f"{error.code()}: {error.details()}"
        assert "/tmp/" not in error.details() and str(ROOT) not in error.details()


# ---- ModelInfer ------------------------------------------------------------------------------

dims = st.one_of(
    st.integers(-2, 40), st.sampled_from([0, 1 << 20, 1 << 31, (1 << 62) + 3, -(1 << 40)])
)
int32s = st.integers(-(1 << 31), (1 << 31) - 1)
uint32s = st.integers(0, (1 << 32) - 1)
CONTENT_VALUES = {
    "bool_contents": st.booleans(),
    "int_contents": int32s,
    "int64_contents": st.integers(-(1 << 63), (1 << 63) - 1),
    "uint_contents": uint32s,
    "uint64_contents": st.integers(0, (1 << 64) - 1),
    "fp32_contents": st.floats(width=32),
    "fp64_contents": st.floats(),
    "bytes_contents": st.binary(max_size=32),
}
# Each test model's inputs: (name, datatype, non-batch dims, batches)
INPUTS = {
    "add_sub": [("INPUT0", "FP32", [16], True), ("INPUT1", "FP32", [16], True)],
    "classifier": [("image", "UINT8", [8], True)],
    "negate": [("x", "INT32", [3], True)],
    "strings": [("text", "BYTES", [-1], False)],
    "versioned": [("x", "FP32", [4], True)],
}
ITEM_SIZE = {"FP32": 4, "UINT8": 1, "INT32": 4}


@st.composite
def near_valid_tensors(draw: st.DrawFn, request: pb.ModelInferRequest, model: str) -> None:
    """The model's own inputs, of fitting shape and length, then perhaps one thing wrong."""
    batch = draw(st.integers(1, 10))
    for name, datatype, shape, batches in INPUTS[model]:
        shape = [draw(st.integers(0, 6)) if d < 0 else d for d in shape]
        shape = [batch, *shape] if batches else shape
        count = int(np.prod(shape))
        if datatype == "BYTES":
            items = [draw(st.binary(max_size=16)) for _ in range(count)]
            data = b"".join(len(i).to_bytes(4, "little") + i for i in items)
        else:
            data = draw(st.binary(min_size=count * ITEM_SIZE[datatype],
                                  max_size=count * ITEM_SIZE[datatype]))  # fmt: skip
        flaw = draw(st.sampled_from(["none", "none", "length", "dtype", "shape", "name", "shm"]))
        if flaw == "shm":  # in shared memory: a registered region or not, in bounds or not
            tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
            shared_memory_parameters(draw, tensor.parameters, len(data))
            continue
        if flaw == "length":
            data = data[: draw(st.integers(0, len(data)))] + draw(st.binary(max_size=8))
        elif flaw == "dtype":
            datatype = draw(st.sampled_from(DATATYPES))
        elif flaw == "shape":
            shape = draw(st.lists(dims, max_size=4))
        elif flaw == "name":
            name = draw(st.sampled_from(["nope", "", name.upper()]))
        request.inputs.add(name=name, datatype=datatype, shape=shape)
        request.raw_input_contents.append(data)


REGION, REGION_BYTES = "fuzz-region", 4096


def shared_memory_parameters(draw: st.DrawFn, parameters, size: int) -> None:
    """A tensor's shared memory parameters: the registered region or another name, sizes and
    offsets in and out of bounds, now and then a parameter of the wrong type."""
    region = draw(st.sampled_from([REGION, REGION, "absent", ""]))
    parameters["shared_memory_region"].string_param = region
    if draw(st.integers(0, 5)):
        sizes = st.sampled_from([size, size, 0, REGION_BYTES + 1, 1 << 40, -4])
        parameters["shared_memory_byte_size"].int64_param = draw(sizes)
    else:
        parameters["shared_memory_byte_size"].string_param = "64"
    if draw(st.booleans()):
        offsets = st.sampled_from([0, 8, REGION_BYTES - 4, REGION_BYTES, -1, 1 << 50])
        parameters["shared_memory_offset"].int64_param = draw(offsets)


@st.composite
def infer_requests(draw: st.DrawFn) -> pb.ModelInferRequest:
    model = draw(st.sampled_from([*INPUTS, *INPUTS, "missing"]))
    request = pb.ModelInferRequest(
        model_name=model, model_version=draw(st.sampled_from(["", "", "", "", "1", "3", "x"]))
    )
    if model in INPUTS and draw(st.integers(0, 3)):
        draw(near_valid_tensors(request, model))
    else:
        raw = draw(st.booleans())
        for _ in range(draw(st.integers(0, 3))):
            tensor = request.inputs.add(
                name=draw(st.sampled_from(["INPUT0", "image", "x", "text", "nope"])),
                datatype=draw(st.sampled_from(DATATYPES)),
                shape=draw(st.lists(dims, max_size=4)),
            )
            if raw:
                request.raw_input_contents.append(draw(st.binary(max_size=2048)))
            else:
                field = draw(st.sampled_from(sorted(CONTENT_VALUES)))
                values = draw(st.lists(CONTENT_VALUES[field], max_size=64))
                getattr(tensor.contents, field).extend(values)
    if draw(st.booleans()):
        output = request.outputs.add(name=draw(st.sampled_from(["OUTPUT0", "logits", "y", "z"])))
        if draw(st.booleans()):
            output.parameters["classification"].int64_param = draw(st.integers(-3, 1 << 40))
        if draw(st.integers(0, 3)) == 0:
            shared_memory_parameters(draw, output.parameters, draw(st.integers(0, 64)))
    for key in draw(st.lists(st.sampled_from(["priority", "timeout", "sequence_id"]), max_size=2)):
        if draw(st.booleans()):
            request.parameters[key].int64_param = draw(st.integers(-(1 << 62), 1 << 62))
        else:
            request.parameters[key].string_param = draw(st.text(max_size=8))
    return request


@pytest.mark.parametrize("examples", EXAMPLES)
def test_model_infer_never_fails_inside(server: RunningServer, examples: int) -> None:
    codes: Counter = Counter()
    with (
        grpc.insecure_channel(server.url) as channel,
        grpc.insecure_channel(server.url, compression=grpc.Compression.Gzip) as gzipped,
    ):
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        stubs = (stub, pb_grpc.GRPCInferenceServiceStub(gzipped))  # compressed messages too

        def send(request: pb.ModelInferRequest) -> None:
            call_checked(stubs[request.ByteSize() % 2].ModelInfer, request, codes)

        key = f"/deepserve-fuzz-{os.getpid()}"
        region = shm.create_shared_memory_region(REGION, key, REGION_BYTES)
        try:
            register = pb.SystemSharedMemoryRegisterRequest(
                name=REGION, key=key, byte_size=REGION_BYTES
            )
            stub.SystemSharedMemoryRegister(register)
            run_property(examples, infer_requests(), send)
        finally:
            stub.SystemSharedMemoryUnregister(pb.SystemSharedMemoryUnregisterRequest(name=REGION))
            shm.destroy_shared_memory_region(region)
        print(f"ModelInfer fuzz, {sum(codes.values())} requests: {dict(codes.most_common())}")
        request = pb.ModelInferRequest(model_name="negate")
        request.inputs.add(name="x", datatype="INT32", shape=[1, 3])
        request.raw_input_contents.append(np.array([[1, 2, 3]], np.int32).tobytes())
        answer = stub.ModelInfer(request)
    assert np.frombuffer(answer.raw_output_contents[0], np.int32).tolist() == [-1, -2, -3]


# ---- Vision ----------------------------------------------------------------------------------


CORPUS = sorted((ROOT / "tests" / "corpus" / "images").iterdir())


def costly_image(draw: st.DrawFn) -> bytes:
    """An image whose decode costs more than its pixels say: many scans, strips, run-length
    escapes or frames (small, so each example stays quick), or a file of the corpus."""
    kind = draw(st.sampled_from(["scans", "strips", "rle_delta", "rle_runs", "frames", "corpus"]))
    if kind == "scans":
        side = draw(st.integers(8, 96))
        return many_scans_jpeg(draw(st.integers(2, 200)), side, side)
    if kind == "strips":
        return many_strips_tiff(draw(st.integers(1, 20_000)))
    if kind == "rle_delta":
        return rle_bmp_wide_delta(draw(st.integers(1, 50_000_000)))
    if kind == "rle_runs":
        return rle_bmp_many_runs(draw(st.integers(2, 128)), draw(st.integers(1, 128)))
    if kind == "frames":
        return many_frames_gif(draw(st.integers(1, 300)), draw(st.integers(1, 16)))
    return draw(st.sampled_from(CORPUS)).read_bytes()


@st.composite
def hostile_image(draw: st.DrawFn) -> vpb.Image:
    kinds = ["valid", "valid", "valid", "truncated", "flipped", "header", "random", "raw", "costly"]
    kind = draw(st.sampled_from(kinds))
    if kind == "costly":
        return vpb.Image(encoded=costly_image(draw))
    if kind == "raw":
        height, width, channels = (draw(st.integers(0, 64)) for _ in range(3))
        size = draw(st.sampled_from([height * width * channels, draw(st.integers(0, 4096))]))
        pixels = bytes(draw(st.integers(0, 255)) for _ in range(0)) + bytes(size % 65536)
        return vpb.Image(raw=vpb.RawImage(pixels=pixels, height=height, width=width,
                                          channels=channels))  # fmt: skip
    if kind == "random":
        return vpb.Image(encoded=draw(st.binary(max_size=512)))
    data = bytearray(
        encoded(
            draw(st.sampled_from(FORMATS)),
            width=draw(st.integers(1, 96)),
            height=draw(st.integers(1, 96)),
            seed=draw(st.integers(0, 3)),
        )
    )
    if kind == "truncated":
        data = data[: draw(st.integers(0, len(data)))]
    elif kind == "flipped":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    elif kind == "header":
        # Overwrite bytes where formats keep their sizes and lengths.
        position = draw(st.integers(0, min(40, len(data) - 4)))
        patches = [b"\xff\xff\xff\xff", b"\x7f\xff\x00\x00", b"\x00\x00\x00\x00"]
        data[position : position + 4] = draw(st.sampled_from(patches))
    return vpb.Image(encoded=bytes(data))


@st.composite
def vision_calls(draw: st.DrawFn) -> tuple[str, Any]:
    images = draw(st.lists(hostile_image(), max_size=3))
    if draw(st.integers(0, 9)) == 0:
        images.append(vpb.Image(encoded=broken_chunk_length_png()))
    task = draw(st.sampled_from(["Classify", "Detect", "Segment"]))
    own = {
        "Classify": ["mnist", "cifar10_resnet20"],
        "Detect": ["ssd"],
        "Segment": ["segmentation"],
    }
    model = draw(st.sampled_from([*own[task] * 12, "mnist", "ssd", "nope", ""]))
    version = draw(st.sampled_from(["", "", "", "", "", "", "", "1", "7", "x"]))
    if task == "Classify":
        request: Any = vpb.ClassifyRequest(model=model, model_version=version, images=images)
        if draw(st.booleans()):
            request.top_k = draw(st.integers(0, (1 << 32) - 1))
    elif task == "Detect":
        request = vpb.DetectRequest(model=model, model_version=version, images=images)
        if draw(st.booleans()):
            request.score_threshold = draw(st.floats(width=32))
        if draw(st.booleans()):
            request.max_detections = draw(st.integers(0, (1 << 32) - 1))
    else:
        request = vpb.SegmentRequest(model=model, model_version=version, images=images)
        request.mask_encoding = draw(st.integers(0, 3))
    return task, request


@pytest.mark.parametrize("examples", EXAMPLES)
def test_vision_never_fails_inside(bundled_server: RunningServer, examples: int) -> None:
    codes: Counter = Counter()
    with grpc.insecure_channel(bundled_server.url) as channel:
        stub = vpb_grpc.VisionStub(channel)
        run_property(
            examples,
            vision_calls(),
            lambda call: call_checked(getattr(stub, call[0]), call[1], codes),
        )
        print(f"Vision fuzz, {sum(codes.values())} requests: {dict(codes.most_common())}")
        answer = stub.Classify(
            vpb.ClassifyRequest(model="mnist", images=[vpb.Image(encoded=DIGIT)])
        )
    assert answer.results[0].labels[0].label == "7"
