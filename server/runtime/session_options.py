"""What a model's config says about its ONNX Runtime sessions, under the names Triton's ONNX
Runtime backend gives them: `optimization { graph { level } }` and the parameters
`intra_op_thread_count`, `inter_op_thread_count` and `execution_mode`; and deepserve's own
`intra_op_spinning`, which Triton's backend does not have."""

from __future__ import annotations

from dataclasses import dataclass

import onnxruntime as ort
from tritonclient.grpc import model_config_pb2 as mc

from ..protocol.errors import ModelLoadError

# Triton's numbering: 0 (unset) every optimisation, 1 basic and extended, -1 basic only,
# 2 none.
GRAPH_LEVELS = {
    0: ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    1: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    -1: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    2: ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}
GRAPH_LEVEL_NAMES = {0: "all", 1: "extended", -1: "basic", 2: "none"}
EXECUTION_MODES = {"0": False, "sequential": False, "1": True, "parallel": True}


@dataclass(frozen=True)
class SessionTuning:
    """The knobs of one session that a config may set; 0 threads: ONNX Runtime's default.
    `spinning`: the intra-op threads spin-wait between a run's operators (ONNX Runtime's
    default); off, they sleep, which a model that runs beside others on few cores wants (a
    pipeline's small steps: their spinning takes the cores the big step's threads need)."""

    intra_op_threads: int = 0
    inter_op_threads: int = 0
    parallel: bool = False
    graph_level: int = 0
    spinning: bool = True

    def apply(self, options: ort.SessionOptions) -> None:
        options.intra_op_num_threads = self.intra_op_threads
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if self.spinning else "0"
        )
        options.graph_optimization_level = GRAPH_LEVELS[self.graph_level]
        if self.parallel:
            options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
            options.inter_op_num_threads = self.inter_op_threads


def _count(config: mc.ModelConfig, key: str, default: int, most: int | None) -> int:
    parameter = config.parameters.get(key)
    if parameter is None or not parameter.string_value.strip():
        return default
    try:
        count = int(parameter.string_value)
    except ValueError:
        raise ModelLoadError(
            f"parameter {key} must be an integer, got '{parameter.string_value[:40]}'"
        ) from None
    if count < 0 or (most is not None and count > most):
        bound = "" if most is None else f"..{most} (--max-intra-op-threads)"
        raise ModelLoadError(f"parameter {key} {count} is outside 0{bound}")
    return count


def session_tuning(
    config: mc.ModelConfig, default_threads: int, most_threads: int | None = None
) -> SessionTuning:
    """The config's session settings, checked: a load error names the field and its value."""
    level = config.optimization.graph.level
    if level not in GRAPH_LEVELS:
        raise ModelLoadError(
            f"optimization.graph.level {level} is not one of -1 (basic), 0 (all, the default), "
            "1 (extended), 2 (none)"
        )
    mode = config.parameters.get("execution_mode")
    mode_value = mode.string_value.strip().lower() if mode is not None else "0"
    if (mode_value or "0") not in EXECUTION_MODES:
        raise ModelLoadError(
            f"parameter execution_mode must be 0 (sequential) or 1 (parallel), got "
            f"'{mode_value[:40]}'"
        )
    return SessionTuning(
        intra_op_threads=_count(config, "intra_op_thread_count", default_threads, most_threads),
        inter_op_threads=_count(config, "inter_op_thread_count", 0, most_threads),
        parallel=EXECUTION_MODES[mode_value or "0"],
        graph_level=level,
        spinning=config_flag(config, "intra_op_spinning", default=True),
    )


def config_flag(config: mc.ModelConfig, key: str, default: bool) -> bool:
    """A config parameter that is "1" or "0"; unset or "auto": `default`."""
    value = config.parameters[key].string_value.strip() if key in config.parameters else ""
    if value in ("", "auto"):
        return default
    if value not in ("0", "1"):
        raise ModelLoadError(f"parameter {key} must be '0' or '1', got '{value[:40]}'")
    return value == "1"
