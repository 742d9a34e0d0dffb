"""Small ONNX models built with onnx.helper, and model repositories made of them, for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 9  # readable by every onnxruntime the project supports

DIGIT_LABELS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
]


def _model(nodes, inputs, outputs, initializers=()) -> bytes:
    graph = helper.make_graph(nodes, "test", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model.SerializeToString()


def add_sub(width: int = 16) -> bytes:
    """OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1 (FP32, dynamic batch)."""
    tensor = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", width])  # noqa: E731
    return _model(
        [
            helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
            helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
        ],
        [tensor("INPUT0"), tensor("INPUT1")],
        [tensor("OUTPUT0"), tensor("OUTPUT1")],
    )


def linear_classifier(
    features: int = 8, classes: int = 10, seed: int = 0, shape: list[int] | None = None
) -> bytes:
    """UINT8 [batch, features] (or [batch, *shape], flattened) -> cast -> scale -> MatMul +
    bias -> FP32 logits [batch, classes]."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(features, classes)).astype(np.float32)
    bias = rng.normal(size=(classes,)).astype(np.float32)
    shape = shape or [features]
    return _model(
        [
            helper.make_node("Flatten", ["image"], ["flat"], axis=1),
            helper.make_node("Cast", ["flat"], ["as_float"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["as_float", "scale"], ["scaled"]),
            helper.make_node("MatMul", ["scaled", "weights"], ["product"]),
            helper.make_node("Add", ["product", "bias"], ["logits"]),
        ],
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", *shape])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        [
            numpy_helper.from_array(np.array(1 / 255, dtype=np.float32), "scale"),
            numpy_helper.from_array(weights, "weights"),
            numpy_helper.from_array(bias, "bias"),
        ],
    )


def int_negate() -> bytes:
    """INT32 [batch, 3] -> negated (no config.pbtxt: the server auto-configures it)."""
    return _model(
        [helper.make_node("Neg", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.INT32, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, ["n", 3])],
    )


def string_identity() -> bytes:
    """BYTES [count] -> the same strings (no batch dimension)."""
    return _model(
        [helper.make_node("Identity", ["text"], ["echo"])],
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["count"])],
        [helper.make_tensor_value_info("echo", TensorProto.STRING, ["count"])],
    )


def add_constant(value: float) -> bytes:
    """FP32 [batch, 4] + value: versions of one model tell themselves apart by `value`."""
    return _model(
        [helper.make_node("Add", ["x", "c"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(np.array(value, dtype=np.float32), "c")],
    )


def accumulator(corrid: int = TensorProto.UINT64) -> bytes:
    """A stateful model for the sequence batcher: ACC_OUT = (1 - START) * ACC_IN + INPUT (a
    sequence's running sum, reset by START), OUTPUT = ACC_OUT, and CORRID_OUT echoes the
    CORRID control (the server's id for the row; `corrid`: its type), READY_OUT the READY one.
    Batches of [B, 1]."""
    f32 = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 1])  # noqa: E731
    i32 = lambda n: helper.make_tensor_value_info(n, TensorProto.INT32, ["batch", 1])  # noqa: E731
    u64 = helper.make_tensor_value_info("CORRID", corrid, ["batch", 1])
    u64_out = helper.make_tensor_value_info("CORRID_OUT", corrid, ["batch", 1])
    one = numpy_helper.from_array(np.array(1.0, np.float32), "one")
    return _model(
        [
            helper.make_node("Cast", ["START"], ["start"], to=TensorProto.FLOAT),
            helper.make_node("Sub", ["one", "start"], ["keep"]),
            helper.make_node("Mul", ["ACC_IN", "keep"], ["kept"]),
            helper.make_node("Add", ["kept", "INPUT"], ["ACC_OUT"]),
            helper.make_node("Identity", ["ACC_OUT"], ["OUTPUT"]),
            helper.make_node("Identity", ["CORRID"], ["CORRID_OUT"]),
            helper.make_node("Identity", ["READY"], ["READY_OUT"]),
            helper.make_node("Identity", ["END"], ["END_OUT"]),
        ],
        [f32("INPUT"), i32("START"), i32("END"), i32("READY"), u64, f32("ACC_IN")],
        [f32("OUTPUT"), u64_out, i32("READY_OUT"), i32("END_OUT"), f32("ACC_OUT")],
        [one],
    )


def accumulator_config(
    max_batch_size: int = 4,
    idle_us: int = 5_000_000,
    strategy: str = "direct { }",
    corrid: str = "TYPE_UINT64",
) -> str:
    return f"""
max_batch_size: {max_batch_size}
input [ {{ name: "INPUT" data_type: TYPE_FP32 dims: [ 1 ] }} ]
output [
  {{ name: "OUTPUT" data_type: TYPE_FP32 dims: [ 1 ] }},
  {{ name: "CORRID_OUT" data_type: {corrid} dims: [ 1 ] }},
  {{ name: "READY_OUT" data_type: TYPE_INT32 dims: [ 1 ] }},
  {{ name: "END_OUT" data_type: TYPE_INT32 dims: [ 1 ] }}
]
sequence_batching {{
  max_sequence_idle_microseconds: {idle_us}
  {strategy}
  control_input [
    {{ name: "START" control [ {{ kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] }} ] }},
    {{ name: "END" control [ {{ kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] }} ] }},
    {{ name: "READY" control [ {{ kind: CONTROL_SEQUENCE_READY int32_false_true: [ 0, 1 ] }} ] }},
    {{ name: "CORRID" control [ {{ kind: CONTROL_SEQUENCE_CORRID data_type: {corrid} }} ] }}
  ]
  state [ {{ input_name: "ACC_IN" output_name: "ACC_OUT" data_type: TYPE_FP32 dims: [ 1 ] }} ]
}}
"""


def write_model(
    repository: Path,
    name: str,
    onnx_bytes: bytes,
    config: str | None = None,
    versions: tuple[int, ...] = (1,),
    files: dict[str, str] | None = None,
) -> Path:
    model_dir = repository / name
    for version in versions:
        (model_dir / str(version)).mkdir(parents=True, exist_ok=True)
        (model_dir / str(version) / "model.onnx").write_bytes(onnx_bytes)
    if config is not None:
        (model_dir / "config.pbtxt").write_text(config)
    for filename, text in (files or {}).items():
        (model_dir / filename).write_text(text)
    return model_dir


ADD_SUB_CONFIG = """
name: "add_sub"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  { name: "INPUT0" data_type: TYPE_FP32 dims: [ 16 ] },
  { name: "INPUT1" data_type: TYPE_FP32 dims: [ 16 ] }
]
output [
  { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 16 ] },
  { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ 16 ] }
]
instance_group [ { count: 2 kind: KIND_CPU } ]
"""

CLASSIFIER_CONFIG = """
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "image" data_type: TYPE_UINT8 dims: [ 8 ] } ]
output [ { name: "logits" data_type: TYPE_FP32 dims: [ 10 ] label_filename: "labels.txt" } ]
"""

STRINGS_CONFIG = """
max_batch_size: 0
input [ { name: "text" data_type: TYPE_STRING dims: [ -1 ] } ]
output [ { name: "echo" data_type: TYPE_STRING dims: [ -1 ] } ]
"""

VERSIONED_CONFIG = """
max_batch_size: 4
version_policy: { specific: { versions: [ 1, 3 ] } }
"""


def standard_repository(repository: Path) -> Path:
    """The repository most server tests run against: every model in it loads."""
    repository.mkdir(parents=True, exist_ok=True)
    write_model(repository, "add_sub", add_sub(), ADD_SUB_CONFIG)
    write_model(
        repository,
        "classifier",
        linear_classifier(),
        CLASSIFIER_CONFIG,
        files={"labels.txt": "\n".join(DIGIT_LABELS) + "\n"},
    )
    write_model(repository, "negate", int_negate())  # no config.pbtxt
    write_model(repository, "strings", string_identity(), STRINGS_CONFIG)
    for version in (1, 2, 3):
        write_model(
            repository,
            "versioned",
            add_constant(float(version)),
            VERSIONED_CONFIG,
            versions=(version,),
        )
    return repository


def slow_matmul(width: int = 512, depth: int = 64, seed: int = 0) -> bytes:
    """FP32 [batch, width] through `depth` MatMuls with one shared weight: compute time grows
    with the batch (tens of ms for 256 items), so tests can hold an instance busy. The weight is
    orthogonal, so values stay finite."""
    rng = np.random.default_rng(seed)
    weight, _ = np.linalg.qr(rng.standard_normal((width, width)))
    initializers = [numpy_helper.from_array(weight.astype(np.float32), "w")]
    nodes, current = [], "x"
    for i in range(depth):
        out = "y" if i == depth - 1 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [current, "w"], [out]))
        current = out
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        initializers,
    )
