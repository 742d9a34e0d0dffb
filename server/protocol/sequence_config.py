"""A sequence model's `sequence_batching` config, read once: the control inputs the server fills
(START, END, READY, CORRID) and the implicit state it keeps between a sequence's requests,
with Triton's semantics. Neither kind of tensor is in the config's `input` / `output`: the
client never sends or sees them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from .codecs import datatype_from_config, numpy_dtype
from .errors import InvalidInput, ModelLoadError

Control = mc.ModelSequenceBatching.Control
KINDS = {
    Control.CONTROL_SEQUENCE_START: "start",
    Control.CONTROL_SEQUENCE_END: "end",
    Control.CONTROL_SEQUENCE_READY: "ready",
    Control.CONTROL_SEQUENCE_CORRID: "corrid",
}
DEFAULT_IDLE_US = 1_000_000  # Triton's default max_sequence_idle_microseconds
CORRID_TYPES = {"UINT64", "INT64", "UINT32", "INT32", "BYTES"}


@dataclass(frozen=True)
class ControlInput:
    name: str
    kind: str
    """start, end, ready or corrid."""
    datatype: str
    false_value: float | bool = 0
    true_value: float | bool = 1

    def values(self, flags: Sequence[bool | int | str]) -> np.ndarray:
        """This control for a batch: [B, 1], one row per item."""
        if self.kind == "corrid":
            if self.datatype == "BYTES":
                return np.array([[str(v)] for v in flags], dtype=object)
            return np.array([[v] for v in flags], dtype=numpy_dtype(self.datatype))
        column = [[self.true_value if flag else self.false_value] for flag in flags]
        return np.array(column, dtype=numpy_dtype(self.datatype))


@dataclass(frozen=True)
class StateTensor:
    input_name: str
    output_name: str
    datatype: str
    dims: tuple[int, ...]

    def initial(self) -> np.ndarray:
        """A new sequence's state: zeros (one item, batch dimension included)."""
        if self.datatype == "BYTES":
            return np.full((1, *self.dims), "", dtype=object)
        return np.zeros((1, *self.dims), dtype=numpy_dtype(self.datatype))


@dataclass(frozen=True)
class SequenceConfig:
    controls: tuple[ControlInput, ...]
    states: tuple[StateTensor, ...]
    idle_ns: int
    strategy: str
    """direct (a sequence holds a slot of an instance) or oldest (the oldest ready ones batch)."""
    max_sequences: int
    """Sequences active at once; a new one past it waits for one to end."""
    delay_ns: int
    """How long a batch may wait for more ready sequences."""

    @property
    def hidden_inputs(self) -> set[str]:
        return {c.name for c in self.controls} | {s.input_name for s in self.states}

    @property
    def hidden_outputs(self) -> set[str]:
        return {s.output_name for s in self.states}


def _control(entry: mc.ModelSequenceBatching.ControlInput) -> ControlInput:
    if len(entry.control) != 1:
        raise ModelLoadError(
            f"sequence_batching control input '{entry.name}' needs exactly one control, "
            f"has {len(entry.control)}"
        )
    (control,) = entry.control
    kind = KINDS[control.kind]
    if kind == "corrid":
        datatype = datatype_from_config(control.data_type)
        if datatype not in CORRID_TYPES:
            raise ModelLoadError(
                f"sequence_batching CORRID input '{entry.name}': data_type must be one of "
                f"{sorted(CORRID_TYPES)}, got {datatype}"
            )
        return ControlInput(entry.name, kind, datatype)
    for field, datatype in (
        ("int32_false_true", "INT32"),
        ("fp32_false_true", "FP32"),
        ("bool_false_true", "BOOL"),
    ):
        pair = list(getattr(control, field))
        if pair:
            if len(pair) != 2:
                raise ModelLoadError(
                    f"sequence_batching control input '{entry.name}': {field} needs two "
                    f"values (false, true), got {pair}"
                )
            return ControlInput(entry.name, kind, datatype, pair[0], pair[1])
    raise ModelLoadError(
        f"sequence_batching control input '{entry.name}' ({kind.upper()}) needs "
        "int32_false_true, fp32_false_true or bool_false_true"
    )


def _state(entry: mc.ModelSequenceBatching.State) -> StateTensor:
    if not entry.input_name or not entry.output_name:
        raise ModelLoadError("sequence_batching state needs input_name and output_name")
    if entry.initial_state:
        raise ModelLoadError(
            f"sequence_batching state '{entry.input_name}': initial_state is not supported; "
            "a sequence's state starts as zeros"
        )
    dims = tuple(entry.dims)
    if any(d < 0 for d in dims):
        raise ModelLoadError(
            f"sequence_batching state '{entry.input_name}': dims {list(dims)} must be fixed"
        )
    return StateTensor(
        entry.input_name, entry.output_name, datatype_from_config(entry.data_type), dims
    )


def sequence_config(config: mc.ModelConfig, instances: int = 1) -> SequenceConfig | None:
    """The model's sequence batching, checked; None for a model without it."""
    if not config.HasField("sequence_batching"):
        return None
    batching = config.sequence_batching
    if config.max_batch_size < 1:
        raise ModelLoadError(
            "a sequence model needs max_batch_size of at least 1 (its sequences share batches)"
        )
    controls = tuple(_control(entry) for entry in batching.control_input)
    kinds = [c.kind for c in controls]
    repeated = sorted({k for k in kinds if kinds.count(k) > 1})
    if repeated:
        raise ModelLoadError(f"sequence_batching names more than one {repeated} control input")
    items = max(config.max_batch_size, 1)
    if batching.HasField("oldest"):
        strategy = "oldest"
        max_sequences = batching.oldest.max_candidate_sequences or items * instances
        delay_us = batching.oldest.max_queue_delay_microseconds
    else:
        strategy = "direct"
        max_sequences = items * instances  # one slot per batch row of each instance
        delay_us = batching.direct.max_queue_delay_microseconds
    idle_us = batching.max_sequence_idle_microseconds or DEFAULT_IDLE_US
    return SequenceConfig(
        controls=controls,
        states=tuple(_state(entry) for entry in batching.state),
        idle_ns=idle_us * 1_000,
        strategy=strategy,
        max_sequences=max_sequences,
        delay_ns=delay_us * 1_000,
    )


MAX_STRING_ID = 256
"""Longest string sequence id, in characters."""


@dataclass(frozen=True)
class SequenceStep:
    """One request's place in its sequence: the id and the START / END flags it carries."""

    id: int | str
    start: bool = False
    end: bool = False


def _flag(parameters: Mapping[str, object], name: str) -> bool:
    value = parameters.get(name, False)
    if not isinstance(value, bool):
        raise InvalidInput(f"parameter {name} must be a boolean, got {value!r}")
    return value


def sequence_step(parameters: Mapping[str, object]) -> SequenceStep | None:
    """The request's sequence parameters as tritonclient sends them (`sequence_id` as an
    integer or a string, `sequence_start`, `sequence_end`), or None when it names no sequence."""
    if "sequence_id" not in parameters:
        if "sequence_start" in parameters or "sequence_end" in parameters:
            raise InvalidInput("sequence_start and sequence_end need a sequence_id")
        return None
    raw = parameters["sequence_id"]
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise InvalidInput(
            f"parameter sequence_id must be an unsigned integer or a string, got {raw!r}"
        )
    if isinstance(raw, int) and not 0 <= raw < 1 << 64:
        raise InvalidInput(f"parameter sequence_id {raw} is outside the range of a uint64")
    if isinstance(raw, str) and len(raw) > MAX_STRING_ID:
        raise InvalidInput(
            f"parameter sequence_id is {len(raw)} characters long, above the limit of "
            f"{MAX_STRING_ID}"
        )
    return SequenceStep(raw, _flag(parameters, "sequence_start"), _flag(parameters, "sequence_end"))
