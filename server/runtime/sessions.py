"""ONNX Runtime: choosing execution providers, building sessions, warming them up."""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tritonclient.grpc import model_config_pb2 as mc

from ..protocol.codecs import datatype_from_config, numpy_dtype
from ..protocol.errors import ModelLoadError
from ..protocol.numbers import decimal
from ..protocol.sequence_config import sequence_config
from . import gpu_options
from .session_options import SessionTuning, session_tuning

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"

ProviderSpec = str | tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class ProviderChoice:
    providers: list[ProviderSpec]
    reason: str

    @property
    def names(self) -> list[str]:
        return [p if isinstance(p, str) else p[0] for p in self.providers]

    @property
    def cuda_graphs(self) -> bool:
        return any(
            not isinstance(p, str) and p[0] == CUDA and "enable_cuda_graph" in p[1]
            for p in self.providers
        )


@functools.cache
def preload_cuda_libraries() -> None:
    """Let onnxruntime-gpu find CUDA / cuDNN installed as Python packages (as torch installs
    them) when they are not on the library path; harmless when they are."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload()
    except Exception as exc:  # missing packages: ORT then looks on the library path
        log.debug("onnxruntime.preload_dlls: %s", exc)


def _gpu_accelerators(
    config: mc.ModelConfig,
) -> list[mc.ModelOptimizationPolicy.ExecutionAccelerators.Accelerator]:
    return list(config.optimization.execution_accelerators.gpu_execution_accelerator)


def choose_providers(
    config: mc.ModelConfig,
    device: str,
    available: list[str] | None = None,
    gpu_id: int = 0,
    model_file: Path | None = None,
    engine_cache: Path | None = None,
    cuda_graphs: bool | None = None,
) -> ProviderChoice:
    """Execution providers for one instance, from the config, the `device` setting and what the
    installed onnxruntime offers. TensorRT only when the config asks for it (its engine builds are
    slow and change numerics); CUDA whenever it is there and allowed; CPU always last."""
    available = ort.get_available_providers() if available is None else available
    kinds = {group.kind for group in config.instance_group}
    if device == "cpu":
        return ProviderChoice([CPU], "device setting is 'cpu'")
    if kinds == {mc.ModelInstanceGroup.KIND_CPU}:
        return ProviderChoice([CPU], "instance_group kind is KIND_CPU")
    if CUDA not in available:
        if device == "cuda" or mc.ModelInstanceGroup.KIND_GPU in kinds:
            raise ModelLoadError(
                f"a GPU was asked for but onnxruntime offers only {available} "
                "(install the 'gpu' extra: onnxruntime-gpu)"
            )
        return ProviderChoice(
            [CPU], f"CUDA provider not installed (onnxruntime offers {available})"
        )
    providers: list[ProviderSpec] = []
    reasons: list[str] = []
    requested = {acc.name: dict(acc.parameters) for acc in _gpu_accelerators(config)}
    preload_cuda_libraries()
    if "tensorrt" in requested:
        missing = gpu_options.tensorrt_missing() if TENSORRT in available else None
        if missing:
            reasons.append(f"config asks for TensorRT but it cannot start here: {missing}")
        elif TENSORRT in available:
            facts = {
                "onnxruntime": ort.__version__,
                "tensorrt": gpu_options.tensorrt_version(),
                "gpu": gpu_options.gpu_name(gpu_id),
            }
            options = gpu_options.tensorrt_options(
                config, requested["tensorrt"], gpu_id, model_file, engine_cache, facts
            )
            providers.append((TENSORRT, options))
            reasons.append("TensorRT asked for by the config")
        else:
            reasons.append("config asks for TensorRT but it is not installed")
    else:
        reasons.append("TensorRT not asked for in optimization.execution_accelerators")
    if cuda_graphs is None and providers and gpu_options.cuda_graphs_setting(config) is None:
        cuda_graphs = False  # TensorRT takes the graph: the CUDA provider cannot capture it all
    cuda = gpu_options.cuda_options(config, gpu_id, cuda_graphs)
    providers.append((CUDA, cuda))
    providers.append(CPU)
    reasons.append(f"CUDA available (GPU {gpu_id})")
    if "enable_cuda_graph" in cuda:
        reasons.append("CUDA graphs a batch size")
    return ProviderChoice(providers, "; ".join(reasons))


def intra_op_threads(config: mc.ModelConfig, default: int) -> int:
    return session_tuning(config, default).intra_op_threads


def create_session(
    path: Path, choice: ProviderChoice, threads: int | SessionTuning, spinning: bool = False
) -> ort.InferenceSession:
    """The intra-op threads spin-wait between a run's operators (a wake-up for each of them
    cost mnist 0.16 ms a run here) and stop when the run ends, so they do not burn the cores
    the event loop and front ends need between batches; `spinning`: they go on spinning after
    a run too (ONNX Runtime's own default); a config's `intra_op_spinning` 0 stops their
    spinning within a run as well. `threads`: intra-op threads, or every setting the
    config gives (session_options.session_tuning)."""
    options = ort.SessionOptions()
    tuning = SessionTuning(intra_op_threads=threads) if isinstance(threads, int) else threads
    tuning.apply(options)
    options.add_session_config_entry("session.force_spinning_stop", "0" if spinning else "1")
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=choice.providers)
    except Exception as exc:  # ORT raises several unrelated types for bad files
        raise ModelLoadError(f"ONNX Runtime cannot load {path.name}: {exc}") from exc


def _warmup_value(
    tensor: mc.ModelInput, batching: bool, image_size: tuple[int, int] | None
) -> np.ndarray:
    dims = list(tensor.dims)
    if image_size and len(dims) == 3 and dims[0] < 0 and dims[1] < 0:
        dims[:2] = image_size  # an image of any size: warm up at the size it is served at
    dims = [1 if d < 0 else d for d in dims]
    shape = ([1] if batching else []) + dims
    datatype = datatype_from_config(tensor.data_type)
    if datatype == "BYTES":
        return np.full(shape, "", dtype=object)
    return np.zeros(shape, dtype=numpy_dtype(datatype))


def warmup_inputs(config: mc.ModelConfig) -> tuple[dict[str, np.ndarray], bool]:
    """Inputs for a warm-up run: zeros, with 1 for the batch and every variable dimension.

    Returns the inputs and whether the shapes are exact (no variable non-batch dimension); a
    model whose shapes had to be guessed may reject them, which is then only logged.
    """
    batching = config.max_batch_size > 0
    exact = all(d >= 0 for t in config.input for d in t.dims)
    params = {k: v.string_value for k, v in config.parameters.items()}
    size = None
    height, width = decimal(params.get("image_height", "")), decimal(params.get("image_width", ""))
    if height is not None and width is not None:
        size = (height, width)
        exact = exact or len(config.input) == 1
    feeds = {t.name: _warmup_value(t, batching, size) for t in config.input}
    sequences = sequence_config(config)
    if sequences is not None:  # the tensors the server fills for a sequence model
        for control in sequences.controls:
            feeds[control.name] = control.values([1] if control.kind == "corrid" else [False])
        for state in sequences.states:
            feeds[state.input_name] = state.initial()
    return feeds, exact


def warmup_batches(config: mc.ModelConfig, providers: list[str]) -> list[int]:
    """Batch sizes to warm up at: 1, and with TensorRT also the profile's opt and max, so its
    engine is built (or read from the cache) at load, not at the first real request."""
    if TENSORRT not in providers or config.max_batch_size <= 0:
        return [1]
    preferred = list(config.dynamic_batching.preferred_batch_size)
    opt = max(preferred) if preferred else config.max_batch_size
    return sorted({1, opt, config.max_batch_size})


def warm_up(
    session: ort.InferenceSession,
    config: mc.ModelConfig,
    label: str,
    batches: Sequence[int] = (),
) -> None:
    """One run at each batch size it will see first (`batches`: every size a padded batch
    takes, where the provider tunes per shape)."""
    inputs, exact = warmup_inputs(config)
    batching = config.max_batch_size > 0
    started = time.perf_counter()
    sizes = sorted({*warmup_batches(config, session.get_providers()), *batches})
    try:
        for batch in sizes:
            feeds = (
                {k: np.repeat(v, batch, axis=0) for k, v in inputs.items()} if batching else inputs
            )
            session.run(None, feeds)
    except Exception as exc:
        if exact:
            raise ModelLoadError(f"warm-up inference failed: {exc}") from exc
        log.warning(
            "%s: warm-up with guessed shapes (1 for each variable dimension) failed, "
            "first requests will be slower: %s",
            label,
            exc,
        )
        return
    if batches:
        log.info(
            "%s: warmed up at batch sizes %s in %.1f s", label, sizes, time.perf_counter() - started
        )
    if TENSORRT in session.get_providers():
        log.info(
            "%s: TensorRT engine ready in %.1f s (built, or read from the engine cache)",
            label,
            time.perf_counter() - started,
        )


def inference_executor() -> ThreadPoolExecutor:
    """The threads model runs and model loads go to (ONNX Runtime releases the GIL)."""
    return ThreadPoolExecutor(
        max_workers=max(4, (os.cpu_count() or 1) * 2), thread_name_prefix="deepserve-infer"
    )
