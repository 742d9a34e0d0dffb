"""A text generator small enough to reason about, for tests: its encoder and one-step decoder
echo the input text back a character a step (the answer is the input, so tests know it
without running the model), and its `attention` is a one-hot of the byte being read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from .onnx_models import _model

TEXT_LENGTH = 32
FIRST_CHAR = 32  # printable ASCII, ' ' .. '~'
TOKENS = ["<s>", "</s>", *(chr(c) for c in range(FIRST_CHAR, 127))]


def echo_encoder(length: int = TEXT_LENGTH) -> bytes:
    """text uint8 [N, length] -> memory float [N, length] (the bytes as numbers)."""
    return _model(
        [helper.make_node("Cast", ["text"], ["memory"], to=TensorProto.FLOAT)],
        [helper.make_tensor_value_info("text", TensorProto.UINT8, ["N", length])],
        [helper.make_tensor_value_info("memory", TensorProto.FLOAT, ["N", length])],
    )


def echo_step(length: int = TEXT_LENGTH, endless: bool = False) -> bytes:
    """token [N], position [N, 1] (carried: position_out), memory [N, length] -> logits over
    TOKENS picking the byte at `position` (the end token past the text; a space instead when
    `endless`), position + 1, and attention: one-hot of the position."""
    offset = FIRST_CHAR - 2  # token id of a byte
    after_text = 2.0 if endless else 1.0
    constants = [
        numpy_helper.from_array(np.arange(length, dtype=np.float32)[None], "positions"),
        numpy_helper.from_array(np.arange(len(TOKENS), dtype=np.float32)[None], "vocabulary"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array(float(offset), np.float32), "offset"),
        numpy_helper.from_array(np.array(after_text, np.float32), "after_text"),
    ]
    nodes = [
        helper.make_node("Equal", ["position", "positions"], ["here"]),
        helper.make_node("Cast", ["here"], ["attention"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["memory", "attention"], ["picked"]),
        helper.make_node("ReduceSum", ["picked", "axis1"], ["byte"], keepdims=1),
        helper.make_node("Equal", ["byte", "zero"], ["past_text"]),
        helper.make_node("Sub", ["byte", "offset"], ["byte_token"]),
        helper.make_node("Where", ["past_text", "after_text", "byte_token"], ["target"]),
        helper.make_node("Sub", ["vocabulary", "target"], ["distance"]),
        helper.make_node("Abs", ["distance"], ["far"]),
        helper.make_node("Neg", ["far"], ["logits"]),
        # the previous token plays no part, but a step graph takes it: 0 * token keeps it used
        helper.make_node("Cast", ["token"], ["token_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["token_f", "axis1"], ["token_col"]),
        helper.make_node("Mul", ["token_col", "zero"], ["nothing"]),
        helper.make_node("Add", ["position", "one"], ["next"]),
        helper.make_node("Add", ["next", "nothing"], ["position_out"]),
    ]
    return _model(
        nodes,
        [
            helper.make_tensor_value_info("token", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("position", TensorProto.FLOAT, ["N", 1]),
            helper.make_tensor_value_info("memory", TensorProto.FLOAT, ["N", length]),
        ],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", len(TOKENS)]),
            helper.make_tensor_value_info("position_out", TensorProto.FLOAT, ["N", 1]),
            helper.make_tensor_value_info("attention", TensorProto.FLOAT, ["N", length]),
        ],
        constants,
    )


def echo_config(
    max_tokens: int = 40, max_active: int = 8, decoupled: bool = True, batching: str = "continuous"
) -> str:
    return f"""
backend: "seq2seq"
max_batch_size: 0
model_transaction_policy {{ decoupled: {"true" if decoupled else "false"} }}
parameters {{ key: "max_tokens" value {{ string_value: "{max_tokens}" }} }}
parameters {{ key: "max_active" value {{ string_value: "{max_active}" }} }}
parameters {{ key: "batching" value {{ string_value: "{batching}" }} }}
"""


def write_echo(
    repository: Path,
    name: str = "echo",
    config: str | None = None,
    endless: bool = False,
    length: int = TEXT_LENGTH,
) -> Path:
    model_dir = repository / name
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    (model_dir / "1" / "encoder.onnx").write_bytes(echo_encoder(length))
    (model_dir / "1" / "decoder_step.onnx").write_bytes(echo_step(length, endless))
    (model_dir / "tokens.txt").write_text("\n".join(TOKENS) + "\n")
    (model_dir / "config.pbtxt").write_text(config if config is not None else echo_config())
    return model_dir
