"""How much memory a model's intermediate tensors take per input element, estimated from its
graph, so that a request can be refused before it runs when one of its items would need more
than the server allows. A model whose inputs have free dimensions (a segmenter's height and
width) otherwise turns a request within every size limit into gigabytes of activations: 32 MB
of pixels took 1.5 GB.

The estimate: ONNX shape inference at a probe shape (batch 1, every free dimension
PROBE_SIDE), then the peak over the graph's nodes, in order, of the bytes of the tensors
alive at once (made by a node, freed after their last reader). Divided by the probe's input
elements it scales with the request's items for the convolutional and dense models this
server runs; a model whose intermediates grow faster than its inputs (attention over a free
length) is underestimated, and its config may set the figure itself."""

from __future__ import annotations

import logging
import math
from pathlib import Path

log = logging.getLogger(__name__)

PARAMETER = "activation_bytes_per_element"
"""The config parameter that holds the estimate (or an operator's own figure)."""
PROBE_SIDE = 64
SMALL_CONSTANT_BYTES = 4096
"""Initializers up to this size keep their values (Reshape targets, axes); larger ones (the
weights) are given to shape inference as shapes only, which keeps the estimate fast."""


def bytes_per_element(model_file: Path) -> float | None:
    """The estimate for one ONNX file, or None when its graph cannot be read that way."""
    try:
        import onnx
        from onnx import helper, shape_inference
    except ImportError:  # a server installed without onnx: requests are not estimated
        return None
    try:
        model = onnx.load(str(model_file), load_external_data=False)
        graph = model.graph
        weights = [i for i in graph.initializer if _initializer_bytes(i) > SMALL_CONSTANT_BYTES]
        weight_names = {w.name for w in weights}
        kept = [i for i in graph.initializer if i.name not in weight_names]
        del graph.initializer[:]
        graph.initializer.extend(kept)
        graph.input.extend(
            helper.make_tensor_value_info(w.name, w.data_type, list(w.dims)) for w in weights
        )
        constants = {i.name for i in graph.initializer} | weight_names
        probe_elements = 0
        for tensor in graph.input:
            if tensor.name in constants:
                continue
            dims = tensor.type.tensor_type.shape.dim
            for position, dim in enumerate(dims):
                if not dim.HasField("dim_value") or dim.dim_value <= 0:
                    dim.Clear()
                    dim.dim_value = 1 if position == 0 else PROBE_SIDE
            probe_elements += math.prod(d.dim_value for d in dims)
        inferred = shape_inference.infer_shapes(model, data_prop=True).graph
        sizes = _tensor_bytes(inferred, helper)
        peak = _peak_alive(inferred, sizes, constants)
    except Exception as error:  # any graph this cannot follow: no estimate
        log.info("%s: no activation estimate (%s)", model_file.name, error)
        return None
    if not probe_elements or not peak:
        return None
    return peak / probe_elements


def _initializer_bytes(initializer: object) -> int:
    dims = getattr(initializer, "dims", ())
    return math.prod(dims) * 4 if dims else 0


def _tensor_bytes(graph: object, helper: object) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for info in [*graph.value_info, *graph.output]:  # type: ignore[attr-defined]
        tensor_type = info.type.tensor_type
        if not tensor_type.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim]
        if any(d < 0 for d in dims):
            continue  # a size only known at run time (NMS's detections): small by nature
        itemsize = helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).itemsize  # type: ignore[attr-defined]
        sizes[info.name] = math.prod(dims) * itemsize
    return sizes


def _peak_alive(graph: object, sizes: dict[str, int], constants: set[str]) -> int:
    """The most bytes of intermediate tensors alive at once, nodes run in the graph's order."""
    nodes = list(graph.node)  # type: ignore[attr-defined]
    last_reader: dict[str, int] = {}
    for index, node in enumerate(nodes):
        for name in node.input:
            last_reader[name] = index
    outputs = {o.name for o in graph.output}  # type: ignore[attr-defined]
    alive: dict[str, int] = {}
    total = peak = 0
    for index, node in enumerate(nodes):
        for name in node.output:
            if name in sizes and name not in constants:
                alive[name] = sizes[name]
                total += sizes[name]
        peak = max(peak, total)
        for name in set(node.input):
            if last_reader.get(name) == index and name in alive and name not in outputs:
                total -= alive.pop(name)
    return peak
