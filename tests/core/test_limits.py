"""Input limits that hold: image size from the header before decoding, a request's decoded-size
budget, image formats by name, tensor elements, BYTES lengths, outputs too large to send; and
client mistakes that used to be INTERNAL."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from onnx import TensorProto, helper
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from deepserve import Client, InvalidInputError
from deepserve.v1 import vision_pb2 as vpb
from deepserve.v1 import vision_pb2_grpc as vpb_grpc

from ..hostile_images import FORMATS, broken_chunk_length_png, encoded, png_bomb
from ..onnx_models import STRINGS_CONFIG, _model, int_negate, string_identity, write_model
from ..server_process import RunningServer, run_server


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _classify_error(url: str, images: list[vpb.Image], model: str = "mnist") -> grpc.RpcError:
    with grpc.insecure_channel(url) as channel:
        stub = vpb_grpc.VisionStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Classify(vpb.ClassifyRequest(model=model, images=images), timeout=30)
    return caught.value


def test_png_bomb_is_refused_from_its_header(bundled_server: RunningServer) -> None:
    bomb = png_bomb()  # 11000 x 11000: 121 Mpx in about 120 KB
    before = rss_mb(bundled_server.process.pid)
    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        errors = list(
            pool.map(
                lambda _: _classify_error(bundled_server.url, [vpb.Image(encoded=bomb)]), range(8)
            )
        )
    elapsed = time.perf_counter() - started
    grown = rss_mb(bundled_server.process.pid) - before
    print(f"8 PNG bombs of {len(bomb)} bytes: refused in {elapsed:.2f} s, RSS +{grown:.1f} MB")
    for error in errors:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "11000x11000 is 121000000 pixels" in error.details()
        assert "max_image_pixels" in error.details()
    assert grown < 50


def test_request_decoded_budget_is_checked_before_decoding(bundled_server: RunningServer) -> None:
    # Each 6000 x 6000 image is under the pixel limit; 8 of them decode to 288 MB.
    image = vpb.Image(encoded=png_bomb(6000, 6000))
    started = time.perf_counter()
    error = _classify_error(bundled_server.url, [image] * 8)
    elapsed = time.perf_counter() - started
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_request_image_mb" in error.details()
    assert "image 7" in error.details()
    assert elapsed < 2.0  # refused from the headers, nothing decoded


def test_formats_outside_the_allowed_list_are_refused(bundled_server: RunningServer) -> None:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (28, 28)).save(buffer, format="PPM")
    error = _classify_error(bundled_server.url, [vpb.Image(encoded=buffer.getvalue())])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "PNG, JPEG, BMP, GIF, TIFF, WEBP" in error.details()


def test_broken_and_truncated_images_are_client_errors(bundled_server: RunningServer) -> None:
    broken = [broken_chunk_length_png()]
    for format in FORMATS:
        data = encoded(format)
        broken += [data[: len(data) // 2], data[:40], data[: len(data) - 7]]
    with grpc.insecure_channel(bundled_server.url) as channel:
        stub = vpb_grpc.VisionStub(channel)
        for index, data in enumerate(broken):
            request = vpb.ClassifyRequest(model="mnist", images=[vpb.Image(encoded=data)])
            try:
                stub.Classify(request, timeout=30)
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (index, error.details())
                assert "image 0" in error.details()
    error = _classify_error(bundled_server.url, [vpb.Image(encoded=broken[0])])
    assert "cannot decode the PNG data (SyntaxError" in error.details()


def test_raw_masks_too_large_to_send_are_refused_before_the_work(
    bundled_server: RunningServer,
) -> None:
    # Two 6000 x 6000 images: their raw masks (72 MB) cannot fit a 64 MiB response.
    image = vpb.Image(encoded=png_bomb(6000, 6000))
    before = _executions(bundled_server.url, "segmentation")
    with grpc.insecure_channel(bundled_server.url) as channel:
        stub = vpb_grpc.VisionStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Segment(vpb.SegmentRequest(model="segmentation", images=[image, image]))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "MASK_ENCODING_PNG" in caught.value.details()
    assert _executions(bundled_server.url, "segmentation") == before  # nothing was computed


def test_a_tensor_whose_intermediates_would_take_gigabytes_is_refused_before_the_work(
    bundled_server: RunningServer,
) -> None:
    """The segmenter's height and width are free: 3344 x 3344 x 3 is within the element limit
    (32 MB of pixels) and took 1.5 GB of activations. A 1024 x 1024 photo still runs."""
    options = [("grpc.max_send_message_length", 64 << 20)]

    def request(side: int) -> pb.ModelInferRequest:
        message = pb.ModelInferRequest(model_name="segmentation")
        message.inputs.add(name="image", datatype="UINT8", shape=[1, side, side, 3])
        message.raw_input_contents.append(bytes(side * side * 3))
        return message

    before = _executions(bundled_server.url, "segmentation")
    with grpc.insecure_channel(bundled_server.url, options=options) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(request(3344), timeout=60)
        assert _executions(bundled_server.url, "segmentation") == before  # nothing was computed
        answer = stub.ModelInfer(request(1024), timeout=60)
        config = stub.ModelConfig(pb.ModelConfigRequest(name="segmentation"), timeout=10).config
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = caught.value.details()
    assert "model 'segmentation' would need about" in details
    assert "limit of 128 MiB (max_item_activation_mb)" in details
    assert list(answer.outputs[0].shape) == [1, 1024, 1024]
    # the estimate is in the model's config, where an operator can also give a figure
    assert float(config.parameters["activation_bytes_per_element"].string_value) > 1


def _executions(url: str, model: str) -> int:
    client = triton.InferenceServerClient(url)
    stats = client.get_inference_statistics(model).model_stats[0]
    client.close()
    return stats.execution_count


def test_typed_contents_out_of_range_are_invalid(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    request = pb.ModelInferRequest(model_name="classifier")
    tensor = request.inputs.add(name="image", datatype="UINT8", shape=[1, 8])
    tensor.contents.uint_contents.extend([1, 2, 3, 300, 5, 6, 7, 8])
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input 'image': value 300 is outside the range of uint8 (0..255)" in (
        caught.value.details()
    )


def _tile_model(factor: int) -> bytes:
    """FP32 [batch, 4] -> tiled to [batch, 4 * factor]: a small input with a large output."""
    from onnx import numpy_helper

    repeats = numpy_helper.from_array(np.array([1, factor], np.int64), "repeats")
    return _model(
        [helper.make_node("Tile", ["x", "repeats"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4 * factor])],
        [repeats],
    )


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("limited")
    repo = root / "models"
    write_model(repo, "negate", int_negate())
    write_model(repo, "strings", string_identity(), STRINGS_CONFIG)
    write_model(repo, "tile", _tile_model(16384))  # 256 KiB of output per item
    args = ("--max-request-elements", "60", "--max-bytes-element-kb", "1", "--max-message-mb", "1")
    with run_server(repo, root, *args) as server:
        yield server


def test_tensor_limits_name_the_limit(limited_server: RunningServer) -> None:
    with Client(limited_server.url, retries=0) as client:
        assert client.infer("negate", {"x": np.ones((20, 3), np.int32)})["y"].sum() == -60
        with pytest.raises(InvalidInputError) as caught:
            client.infer("negate", {"x": np.ones((30, 3), np.int32)})
        assert "limit of 60 (max_request_elements)" in str(caught.value)
        strings = np.array([b"x" * 2048], dtype=object)
        with pytest.raises(InvalidInputError) as caught:
            client.infer("strings", {"text": strings})
        assert "BYTES element of 2048 bytes" in str(caught.value)
        assert "max_bytes_element_kb" in str(caught.value)
        # 2 items x 256 KiB fit the 1 MiB response; 8 would not, and are refused unrun.
        assert client.infer("tile", {"x": np.ones((2, 4), np.float32)})["y"].shape == (2, 65536)
        with pytest.raises(InvalidInputError) as caught:
            client.infer("tile", {"x": np.ones((8, 4), np.float32)})
        assert "the requested outputs would take 2097152 bytes" in str(caught.value)
    client = triton.InferenceServerClient(limited_server.url)
    assert client.get_inference_statistics("tile").model_stats[0].inference_count == 2
    client.close()
