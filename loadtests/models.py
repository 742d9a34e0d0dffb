"""What a benchmark serves: the model under test with batching on and off, and a no-op model of
the same input and output sizes (the transport ceiling), in a scratch model repository."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx
from google.protobuf import text_format
from onnx import TensorProto, helper
from tritonclient.grpc import model_config_pb2 as mc

_ONNX_TYPES = {
    mc.TYPE_UINT8: TensorProto.UINT8,
    mc.TYPE_FP32: TensorProto.FLOAT,
    mc.TYPE_INT32: TensorProto.INT32,
    mc.TYPE_INT64: TensorProto.INT64,
}


def read_config(model_dir: Path) -> mc.ModelConfig:
    return text_format.Parse((model_dir / "config.pbtxt").read_text(), mc.ModelConfig())


def noop_model(config: mc.ModelConfig) -> bytes:
    """One input -> one output of the config's sizes with next to no compute: flatten the input,
    keep as many leading values as the output has, cast them. Batch dimension kept."""
    (tensor_in,) = config.input
    (tensor_out,) = config.output
    out_count = 1
    for dim in tensor_out.dims:
        out_count *= dim
    batch = "batch"
    nodes = [
        helper.make_node("Flatten", [tensor_in.name], ["flat"], axis=1),
        helper.make_node("Slice", ["flat", "starts", "ends", "axes"], ["kept"]),
        helper.make_node("Cast", ["kept"], ["cast"], to=_ONNX_TYPES[tensor_out.data_type]),
        helper.make_node("Reshape", ["cast", "out_shape"], [tensor_out.name]),
    ]
    initializers = [
        helper.make_tensor("starts", TensorProto.INT64, [1], [0]),
        helper.make_tensor("ends", TensorProto.INT64, [1], [out_count]),
        helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
        helper.make_tensor(
            "out_shape", TensorProto.INT64, [1 + len(tensor_out.dims)], [-1, *tensor_out.dims]
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "noop",
        [
            helper.make_tensor_value_info(
                tensor_in.name, _ONNX_TYPES[tensor_in.data_type], [batch, *tensor_in.dims]
            )
        ],
        [
            helper.make_tensor_value_info(
                tensor_out.name, _ONNX_TYPES[tensor_out.data_type], [batch, *tensor_out.dims]
            )
        ],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _write(repo: Path, name: str, onnx_bytes: bytes | Path, config: mc.ModelConfig) -> None:
    model_dir = repo / name
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    target = model_dir / "1" / "model.onnx"
    if isinstance(onnx_bytes, Path):
        shutil.copyfile(onnx_bytes, target)
    else:
        target.write_bytes(onnx_bytes)
    written = mc.ModelConfig()
    written.CopyFrom(config)
    written.name = name
    for output in written.output:
        output.label_filename = ""  # labels are not what is measured
    (model_dir / "config.pbtxt").write_text(text_format.MessageToString(written))


def bench_repository(
    source: Path,
    model: str,
    scratch: Path,
    max_batch_size: int,
    instances: int,
    queue_delay_us: int,
) -> dict[str, str]:
    """Writes the three variants; returns {mode: model name in the scratch repository}."""
    config = read_config(source / model)
    config.max_batch_size = max_batch_size
    del config.instance_group[:]
    config.instance_group.add(count=instances)
    config.ClearField("dynamic_batching")
    onnx_file = source / model / "1" / "model.onnx"
    names = {
        "batching": f"{model}_batching",
        "no_batching": f"{model}_no_batching",
        "noop": f"{model}_noop",
    }
    _write(scratch, names["no_batching"], onnx_file, config)
    config.dynamic_batching.max_queue_delay_microseconds = queue_delay_us
    _write(scratch, names["batching"], onnx_file, config)
    _write(scratch, names["noop"], noop_model(config), config)
    return names
