"""Complete a ModelConfig from the ONNX graph, and check a written one against it.

A model without config.pbtxt gets its inputs, outputs, dtypes and dims from the graph; a symbolic
leading dimension on every input and output means the model batches (`max_batch_size > 0`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tritonclient.grpc import model_config_pb2 as mc

from ..protocol.codecs import config_type_from_datatype, datatype_from_config, datatype_from_ort
from ..protocol.errors import ModelLoadError
from ..protocol.sequence_config import SequenceConfig, sequence_config
from .repository import ONNX_BACKEND, ONNX_PLATFORM

Dim = int | str | None


class NodeArg(Protocol):
    """What ONNX Runtime's `session.get_inputs()` items offer."""

    name: str
    type: str
    shape: Sequence[Dim]


def _is_symbolic(dim: Dim) -> bool:
    return not isinstance(dim, int) or dim < 0


def _graph_dims(shape: Sequence[Dim]) -> list[int]:
    return [d if isinstance(d, int) and d >= 0 else -1 for d in shape]


def _graph_datatype(arg: NodeArg) -> str:
    datatype = datatype_from_ort(arg.type)
    if datatype is None:
        raise ModelLoadError(f"tensor '{arg.name}' has type {arg.type}, which cannot be served")
    return datatype


def graph_batches(inputs: Sequence[NodeArg], outputs: Sequence[NodeArg]) -> bool:
    """True when every input and output has a symbolic (or -1) leading dimension."""
    args = [*inputs, *outputs]
    return bool(args) and all(len(a.shape) > 0 and _is_symbolic(a.shape[0]) for a in args)


def complete_config(
    config: mc.ModelConfig,
    inputs: Sequence[NodeArg],
    outputs: Sequence[NodeArg],
    default_max_batch_size: int,
) -> mc.ModelConfig:
    """Fill what the config leaves out from the graph, then check that the two agree."""
    completed = mc.ModelConfig()
    completed.CopyFrom(config)
    completed.platform = ONNX_PLATFORM
    completed.backend = ONNX_BACKEND
    unspecified = not config.input and not config.output and config.max_batch_size == 0
    if unspecified and graph_batches(inputs, outputs):
        completed.max_batch_size = default_max_batch_size
    batch_offset = 1 if completed.max_batch_size > 0 else 0
    sequences = sequence_config(completed)
    hidden = (sequences.hidden_inputs | sequences.hidden_outputs) if sequences else set()
    for tensors, args in ((completed.input, inputs), (completed.output, outputs)):
        if tensors:
            continue  # written in the config: checked below, not overwritten
        for arg in args:
            if arg.name in hidden:
                continue  # a sequence control or state: the server fills it, not the client
            tensors.add(
                name=arg.name,
                data_type=config_type_from_datatype(_graph_datatype(arg)),
                dims=_graph_dims(arg.shape)[batch_offset:],
            )
    if not completed.instance_group:
        completed.instance_group.add(count=1, kind=mc.ModelInstanceGroup.KIND_AUTO)
    _check_against_graph(completed, inputs, outputs, sequences)
    return completed


def _check_tensor(
    kind: str,
    tensor: mc.ModelInput | mc.ModelOutput,
    arg: NodeArg,
    batching: bool,
) -> None:
    config_type = datatype_from_config(tensor.data_type)
    graph_type = _graph_datatype(arg)
    if config_type != graph_type:
        raise ModelLoadError(
            f"{kind} '{tensor.name}': config says {config_type}, the model has {graph_type}"
        )
    graph_dims = _graph_dims(arg.shape)
    if batching:
        if not graph_dims or graph_dims[0] != -1:
            raise ModelLoadError(
                f"{kind} '{tensor.name}': max_batch_size > 0 needs a dynamic leading dimension, "
                f"the model has shape {graph_dims}"
            )
        graph_dims = graph_dims[1:]
    config_dims = list(tensor.dims)
    if tensor.HasField("reshape"):
        return  # the config reshapes; the graph's rank need not match the config's dims
    if len(config_dims) != len(graph_dims) or any(
        c != g and g != -1 for c, g in zip(config_dims, graph_dims, strict=False)
    ):
        raise ModelLoadError(
            f"{kind} '{tensor.name}': config dims {config_dims} do not fit the model's "
            f"{'non-batch ' if batching else ''}dims {graph_dims}"
        )


def _check_sequence_tensors(
    sequences: SequenceConfig, graph_inputs: dict[str, NodeArg], graph_outputs: dict[str, NodeArg]
) -> None:
    """Every control and state the config names is a tensor of the graph, of its type, and
    each state of its dims (after the batch): a state that changed shape would be fed back."""
    named: list[tuple[str, str, str, dict[str, NodeArg], tuple[int, ...] | None]] = [
        (f"control input '{c.name}'", c.name, c.datatype, graph_inputs, None)
        for c in sequences.controls
    ]
    for state in sequences.states:
        for kind, name, graph in (
            ("input", state.input_name, graph_inputs),
            ("output", state.output_name, graph_outputs),
        ):
            named.append((f"state {kind} '{name}'", name, state.datatype, graph, state.dims))
    for label, name, datatype, graph, dims in named:
        if name not in graph:
            raise ModelLoadError(
                f"sequence_batching {label} is not a tensor of the model; it has {sorted(graph)}"
            )
        graph_type = _graph_datatype(graph[name])
        if graph_type != datatype:
            raise ModelLoadError(
                f"sequence_batching {label}: the config says {datatype}, the model has {graph_type}"
            )
        graph_dims = _graph_dims(graph[name].shape)[1:]
        if dims is not None and (
            len(graph_dims) != len(dims)
            or any(g not in (-1, d) for g, d in zip(graph_dims, dims, strict=True))
        ):
            raise ModelLoadError(
                f"sequence_batching {label}: the config's dims {list(dims)} do not fit the "
                f"model's {graph_dims} (after the batch dimension)"
            )


def _check_against_graph(
    config: mc.ModelConfig,
    inputs: Sequence[NodeArg],
    outputs: Sequence[NodeArg],
    sequences: SequenceConfig | None = None,
) -> None:
    batching = config.max_batch_size > 0
    graph_inputs = {a.name: a for a in inputs}
    graph_outputs = {a.name: a for a in outputs}
    if sequences is not None:
        _check_sequence_tensors(sequences, graph_inputs, graph_outputs)
    for tensor in config.input:
        if tensor.name not in graph_inputs:
            raise ModelLoadError(
                f"config input '{tensor.name}' is not a model input; the model has "
                f"{sorted(graph_inputs)}"
            )
        _check_tensor("input", tensor, graph_inputs[tensor.name], batching)
    named = {t.name for t in config.input} | (sequences.hidden_inputs if sequences else set())
    missing = sorted(set(graph_inputs) - named)
    if missing:
        raise ModelLoadError(f"config lists no entry for model inputs {missing}")
    for tensor in config.output:
        if tensor.name not in graph_outputs:
            raise ModelLoadError(
                f"config output '{tensor.name}' is not a model output; the model has "
                f"{sorted(graph_outputs)}"
            )
        _check_tensor("output", tensor, graph_outputs[tensor.name], batching)
