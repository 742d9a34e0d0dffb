"""The two served graphs of a word-vector table, built with onnx.helper (string tensors need
ONNX-ML's LabelEncoder, which torch does not export):

- `word_embed`: `word` BYTES [N, 1] -> `vector` FP32 [N, D] (unit length) and `known` BOOL
  [N, 1]; a word outside the vocabulary is `known` false with a zero vector, never a made-up
  one.
- `word_similar`: `vector` FP32 [N, D] -> `word` BYTES [N, K] and `score` FP32 [N, K], the K
  words of highest cosine to each vector, best first: the search runs in the graph, so the
  server's dynamic batcher batches it like any other model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tritonclient.grpc import model_config_pb2 as mc

from .export import OPSET, ExportSpec, TensorInfo, write_config

EMBED, SIMILAR = "word_embed", "word_similar"
NEIGHBOURS = 32
"""K: the nearest words word_similar answers per vector (a client asks for up to K - 1 and
drops the word it asked about)."""
MAX_BATCH = 256
_ML = helper.make_opsetid("ai.onnx.ml", 2)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def embed_graph(words: list[str], unit: np.ndarray) -> onnx.ModelProto:
    nodes = [
        helper.make_node(
            "LabelEncoder",
            ["word"],
            ["ids"],
            domain="ai.onnx.ml",
            keys_strings=words,
            values_int64s=list(range(len(words))),
            default_int64=-1,
        ),
        helper.make_node("GreaterOrEqual", ["ids", "zero"], ["known"]),
        helper.make_node("Max", ["ids", "zero"], ["safe_ids"]),
        helper.make_node("Squeeze", ["safe_ids", "axis1"], ["flat_ids"]),
        helper.make_node("Gather", ["table", "flat_ids"], ["looked_up"], axis=0),
        helper.make_node("Cast", ["known"], ["keep"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["looked_up", "keep"], ["vector"]),
    ]
    graph = helper.make_graph(
        nodes,
        EMBED,
        [helper.make_tensor_value_info("word", TensorProto.STRING, ["batch", 1])],
        [
            helper.make_tensor_value_info("vector", TensorProto.FLOAT, ["batch", unit.shape[1]]),
            helper.make_tensor_value_info("known", TensorProto.BOOL, ["batch", 1]),
        ],
        initializer=[
            numpy_helper.from_array(unit, "table"),
            numpy_helper.from_array(np.array(0, np.int64), "zero"),
            numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        ],
    )
    return _model(graph)


def similar_graph(words: list[str], unit: np.ndarray) -> onnx.ModelProto:
    dims = unit.shape[1]
    nodes = [
        helper.make_node("Mul", ["vector", "vector"], ["squares"]),
        helper.make_node("MatMul", ["squares", "ones"], ["norm_squared"]),
        helper.make_node("Sqrt", ["norm_squared"], ["norm"]),
        helper.make_node("Max", ["norm", "tiny"], ["safe_norm"]),
        helper.make_node("Div", ["vector", "safe_norm"], ["direction"]),
        helper.make_node("MatMul", ["direction", "table_t"], ["cosines"]),
        helper.make_node("TopK", ["cosines", "k"], ["score", "indices"], axis=1),
        helper.make_node(
            "LabelEncoder",
            ["indices"],
            ["word"],
            domain="ai.onnx.ml",
            keys_int64s=list(range(len(words))),
            values_strings=words,
            default_string="",
        ),
    ]
    graph = helper.make_graph(
        nodes,
        SIMILAR,
        [helper.make_tensor_value_info("vector", TensorProto.FLOAT, ["batch", dims])],
        [
            helper.make_tensor_value_info("word", TensorProto.STRING, ["batch", NEIGHBOURS]),
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", NEIGHBOURS]),
        ],
        initializer=[
            numpy_helper.from_array(np.ascontiguousarray(unit.T), "table_t"),
            numpy_helper.from_array(np.ones((dims, 1), np.float32), "ones"),
            numpy_helper.from_array(np.array(1e-12, np.float32), "tiny"),
            numpy_helper.from_array(np.array([NEIGHBOURS], np.int64), "k"),
        ],
    )
    return _model(graph)


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET), _ML], producer_name="deepserve"
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def write_models(words: list[str], vectors: np.ndarray, out: Path) -> tuple[Path, Path]:
    """Both models, with their configs, into the repository `out`."""
    unit = unit_rows(vectors)
    dims = unit.shape[1]
    specs = {
        EMBED: (
            embed_graph(words, unit),
            ExportSpec(
                name=EMBED,
                inputs=[TensorInfo("word", mc.TYPE_STRING, [1])],
                outputs=[
                    TensorInfo("vector", mc.TYPE_FP32, [dims]),
                    TensorInfo("known", mc.TYPE_BOOL, [1]),
                ],
                max_batch_size=MAX_BATCH,
            ),
        ),
        SIMILAR: (
            similar_graph(words, unit),
            ExportSpec(
                name=SIMILAR,
                inputs=[TensorInfo("vector", mc.TYPE_FP32, [dims])],
                outputs=[
                    TensorInfo("word", mc.TYPE_STRING, [NEIGHBOURS]),
                    TensorInfo("score", mc.TYPE_FP32, [NEIGHBOURS]),
                ],
                max_batch_size=MAX_BATCH,
                parameters={"finite_inputs": "1"},
            ),
        ),
    }
    paths = []
    for name, (model, spec) in specs.items():
        path = out / name / "1" / "model.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(path))
        write_config(spec, out / name)
        paths.append(path)
    return paths[0], paths[1]
