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
    """One input -> the config's outputs, of their sizes, with next to no compute: flatten the
    input and, per output, keep as many leading values as it has, cast them, shape them. Batch
    dimension kept."""
    (tensor_in,) = config.input
    batch = "batch"
    nodes = [helper.make_node("Flatten", [tensor_in.name], ["flat"], axis=1)]
    initializers = [
        helper.make_tensor("starts", TensorProto.INT64, [1], [0]),
        helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
    ]
    outputs = []
    for index, tensor_out in enumerate(config.output):
        count = 1
        for dim in tensor_out.dims:
            count *= dim
        end, shape = f"end_{index}", f"shape_{index}"
        nodes += [
            helper.make_node("Slice", ["flat", "starts", end, "axes"], [f"kept_{index}"]),
            helper.make_node(
                "Cast", [f"kept_{index}"], [f"cast_{index}"], to=_ONNX_TYPES[tensor_out.data_type]
            ),
            helper.make_node("Reshape", [f"cast_{index}", shape], [tensor_out.name]),
        ]
        initializers += [
            helper.make_tensor(end, TensorProto.INT64, [1], [count]),
            helper.make_tensor(
                shape, TensorProto.INT64, [1 + len(tensor_out.dims)], [-1, *tensor_out.dims]
            ),
        ]
        outputs.append(
            helper.make_tensor_value_info(
                tensor_out.name, _ONNX_TYPES[tensor_out.data_type], [batch, *tensor_out.dims]
            )
        )
    graph = helper.make_graph(
        nodes,
        "noop",
        [
            helper.make_tensor_value_info(
                tensor_in.name, _ONNX_TYPES[tensor_in.data_type], [batch, *tensor_in.dims]
            )
        ],
        outputs,
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model.SerializeToString()


def write_model(repo: Path, name: str, onnx_bytes: bytes | Path, config: mc.ModelConfig) -> None:
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
    write_model(scratch, names["no_batching"], onnx_file, config)
    config.dynamic_batching.max_queue_delay_microseconds = queue_delay_us
    write_model(scratch, names["batching"], onnx_file, config)
    write_model(scratch, names["noop"], noop_model(config), config)
    return names
