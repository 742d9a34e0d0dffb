"""The activation estimate, in process, on graphs whose live tensors are counted by hand here,
and on the bundled segmenter (whose free height and width are what the bound is for)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from deepserve.server.models.activation import bytes_per_element

MODELS = Path(__file__).resolve().parents[2] / "models"


def _chain(path: Path, dims: list[int | str]) -> Path:
    """x -> a = Relu(x) -> b = Relu(a) -> y = Add(a, b): at Add, a, b and y are alive at once,
    each as large as x in float32: 12 bytes per input element."""
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("Relu", ["a"], ["b"]),
            helper.make_node("Add", ["a", "b"], ["y"]),
        ],
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize("dims", [[1, 8], ["batch", "height", "width"], [4, "length"]])
def test_the_peak_of_live_tensors_per_input_element(tmp_path: Path, dims: list) -> None:
    assert bytes_per_element(_chain(tmp_path / "chain.onnx", dims)) == pytest.approx(12.0)


def test_a_tensor_freed_after_its_last_reader_is_not_counted_again(tmp_path: Path) -> None:
    """x -> a -> b -> c, Relu each: at most two of them alive at once (8 bytes per element)."""
    nodes = [
        helper.make_node("Relu", [src], [dst]) for src, dst in (("x", "a"), ("a", "b"), ("b", "c"))
    ]
    graph = helper.make_graph(
        nodes,
        "line",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, ["n", 16])],
    )
    path = tmp_path / "line.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    assert bytes_per_element(path) == pytest.approx(8.0)


def test_a_file_that_is_not_a_graph_has_no_estimate(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not a model")
    assert bytes_per_element(path) is None


def test_the_segmenter_needs_tens_of_bytes_per_pixel_channel() -> None:
    """Convolutions over the full image at 32 and 64 channels, in float32 (the input is uint8):
    tens of bytes of intermediates for each byte of input."""
    estimate = bytes_per_element(MODELS / "segmentation" / "1" / "model.onnx")
    assert estimate is not None and 10 < estimate < 100
