"""Execution-provider options for the GPU, from a model's config.

TensorRT: engines and timing caches in a folder (`--engine-cache`), under a key that changes
with the model file, ONNX Runtime, TensorRT and the GPU, so a change of any builds anew and
nothing else does; one optimisation profile from the config (batch 1 .. max_batch_size, opt at
the largest preferred batch size; variable image dimensions from the task parameters);
`precision_mode: FP16` and `builder_optimization_level` from the accelerator's parameters.

CUDA: config parameters `cuda_cudnn_conv_algo_search`, `cuda_gpu_mem_limit`,
`cuda_arena_extend_strategy`, `cuda_use_tf32`; `cuda_graphs` turns on the provider's graph
capture (server/batching/instance.py binds the fixed buffers it needs, one graph a batch-size
bucket). Its default, `auto`, is on for a batching model with fixed shapes on the CUDA provider
alone: measured on an H200, ONNX Runtime's CUDA provider spent about 140 ms re-planning a
ResNet-50 each time the batch size changed from one run to the next (4 clients: 14 requests/s),
and a graph a bucket replays with no such work (433 requests/s; 16 clients: 1,361 against 56).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import onnxruntime as ort
from tritonclient.grpc import model_config_pb2 as mc

from ..protocol.errors import ModelLoadError
from ..protocol.numbers import decimal

log = logging.getLogger(__name__)

CUDA_PARAMETERS = {
    "cuda_cudnn_conv_algo_search": (
        "cudnn_conv_algo_search",
        ("EXHAUSTIVE", "HEURISTIC", "DEFAULT"),
    ),
    "cuda_arena_extend_strategy": (
        "arena_extend_strategy",
        ("kNextPowerOfTwo", "kSameAsRequested"),
    ),
    "cuda_use_tf32": ("use_tf32", ("0", "1")),
    "cuda_gpu_mem_limit": ("gpu_mem_limit", None),
}


def _parameters(config: mc.ModelConfig) -> dict[str, str]:
    return {key: value.string_value for key, value in config.parameters.items()}


def cuda_graphs_setting(config: mc.ModelConfig) -> bool | None:
    """The config's `cuda_graphs`: True ("1"), False ("0") or None (unset or "auto")."""
    value = _parameters(config).get("cuda_graphs", "").strip()
    if value in ("", "auto"):
        return None
    if value not in ("0", "1"):
        raise ModelLoadError(f"parameter cuda_graphs must be '0', '1' or 'auto', got '{value}'")
    return value == "1"


def fixed_batch_shapes(config: mc.ModelConfig) -> bool:
    """A batching model whose every tensor has fixed dimensions: what a captured graph needs."""
    tensors = [*config.input, *config.output]
    return (
        config.max_batch_size > 0
        and bool(config.input)
        and bool(config.output)
        and not config.HasField("sequence_batching")
        and all(d >= 0 for t in tensors for d in t.dims)
    )


def cuda_options(config: mc.ModelConfig, gpu_id: int, graphs: bool | None = None) -> dict[str, Any]:
    """`graphs`: capture CUDA graphs; None follows the config (auto: when its shapes allow)."""
    options: dict[str, Any] = {"device_id": gpu_id}
    parameters = _parameters(config)
    for key, (option, allowed) in CUDA_PARAMETERS.items():
        value = parameters.get(key, "").strip()
        if not value:
            continue
        if allowed is None:
            if decimal(value) is None:
                raise ModelLoadError(f"parameter {key} must be a number of bytes, got '{value}'")
        elif value not in allowed:
            raise ModelLoadError(f"parameter {key} must be one of {list(allowed)}, got '{value}'")
        options[option] = value
    if graphs is None:
        setting = cuda_graphs_setting(config)
        graphs = fixed_batch_shapes(config) if setting is None else setting
    if graphs:
        options["enable_cuda_graph"] = "1"  # the instance then binds fixed buffers per bucket
    return options


def _shape(dims: list[int], batch: int | None, image: tuple[int, int] | None) -> str | None:
    """'BxD1xD2..' for a profile; None when a variable dimension has no size to take."""
    dims = list(dims)
    if image and len(dims) == 3 and dims[0] < 0 and dims[1] < 0:
        dims[:2] = image
    if any(d < 0 for d in dims):
        return None
    return "x".join(str(d) for d in ([batch] if batch else []) + dims)


def profile(config: mc.ModelConfig) -> dict[str, str]:
    """TensorRT's one optimisation profile for the config: batch 1 .. max_batch_size, opt at the
    largest preferred batch size; empty when a shape is not known."""
    parameters = _parameters(config)
    image = None
    height = decimal(parameters.get("image_height", ""))
    width = decimal(parameters.get("image_width", ""))
    if height is not None and width is not None:
        image = (height, width)
    batching = config.max_batch_size > 0
    largest = config.max_batch_size
    preferred = list(config.dynamic_batching.preferred_batch_size)
    opt = max(preferred) if preferred else largest
    shapes: dict[str, list[str]] = {"min": [], "opt": [], "max": []}
    for tensor in config.input:
        for name, batch in (("min", 1), ("opt", opt), ("max", largest)):
            shape = _shape(list(tensor.dims), batch if batching else None, image)
            if shape is None:
                return {}
            shapes[name].append(f"{tensor.name}:{shape}")
    return {f"trt_profile_{name}_shapes": ",".join(values) for name, values in shapes.items()}


def library_will_not_load(library: Path) -> str | None:
    """Why a shared library does not load (it, or a library it needs, missing or broken), by
    the library's file name only; None when it loads."""
    if not library.is_file():
        return f"{library.name} is not installed"
    try:
        ctypes.CDLL(str(library))
    except OSError as exc:
        culprit, _, why = str(exc).partition(":")  # "<library>: <the loader's words>"
        why = re.sub(r"(/[^\s/()]+)+/", "", why).strip()  # folders out, file names kept
        return f"{Path(culprit).name} does not load ({why})"
    return None


def tensorrt_missing() -> str | None:
    """Why ONNX Runtime's TensorRT provider cannot start on this host, or None when it can.
    onnxruntime-gpu lists the provider whether TensorRT (libnvinfer) is installed or not;
    loading the provider's library is what tells (not cached: the CUDA libraries it needs may
    be preloaded later)."""
    capi = Path(ort.__file__).parent / "capi"
    return library_will_not_load(capi / "libonnxruntime_providers_tensorrt.so")


@functools.cache
def tensorrt_version() -> str:
    """The TensorRT library ONNX Runtime will load (libnvinfer), or 'unknown'."""
    for name in ("libnvinfer.so.10", "libnvinfer.so.8", "libnvinfer.so"):
        try:
            library = ctypes.CDLL(name)
        except OSError:
            continue
        code = library.getInferLibVersion()
        major, rest = divmod(code, 10000) if code >= 10000 else divmod(code, 1000)
        return f"{major}.{rest // 100}.{rest % 100}"
    return "unknown"


def gpu_name(gpu_id: int) -> str:
    try:
        import pynvml

        pynvml.nvmlInit()
        name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(gpu_id))
        return name.decode() if isinstance(name, bytes) else name
    except Exception:  # no NVML: the key still changes with the model and the versions
        return f"gpu{gpu_id}"


@functools.cache
def gpu_count() -> int | None:
    """GPUs NVML sees, or None when it cannot tell (no driver, no nvidia-ml-py)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return int(pynvml.nvmlDeviceGetCount())
    except Exception:
        return None


def check_gpu_ids(ids: list[int], count: int | None) -> None:
    """A clear load error for an instance_group that lists a GPU the host does not have."""
    missing = sorted({i for i in ids if count is not None and i >= count})
    if missing:
        have = f"{count} GPU(s), 0..{count - 1}" if count else "no GPU"
        raise ModelLoadError(f"instance_group lists GPU {missing}, but this host has {have}")


def cache_key(model_file: Path, facts: Mapping[str, str]) -> str:
    """Changes with the model file's bytes and with every fact (ONNX Runtime, TensorRT, GPU)."""
    digest = hashlib.sha256()
    with model_file.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    for key in sorted(facts):
        digest.update(f"\0{key}={facts[key]}".encode())
    return digest.hexdigest()[:20]


def tensorrt_options(
    config: mc.ModelConfig,
    accelerator: Mapping[str, str],
    gpu_id: int,
    model_file: Path | None,
    engine_cache: Path | None,
    facts: Mapping[str, str],
) -> dict[str, Any]:
    options: dict[str, Any] = {"device_id": gpu_id}
    if accelerator.get("precision_mode", "").upper() == "FP16":
        options["trt_fp16_enable"] = True
    if "max_workspace_size_bytes" in accelerator:
        options["trt_max_workspace_size"] = int(accelerator["max_workspace_size_bytes"])
    if "builder_optimization_level" in accelerator:
        level = accelerator["builder_optimization_level"]
        if decimal(level) not in range(6):
            raise ModelLoadError(f"builder_optimization_level must be 0..5, got '{level}'")
        options["trt_builder_optimization_level"] = int(level)
    if model_file is not None and engine_cache is not None:
        key = cache_key(model_file, facts)
        engines = engine_cache / f"{config.name}" / key
        timing = (
            engine_cache
            / "timing"
            / hashlib.sha256(f"{facts.get('tensorrt')}|{facts.get('gpu')}".encode()).hexdigest()[
                :16
            ]
        )
        options |= {
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(engines),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(timing),
        }
    if cuda_graphs_setting(config):
        options["trt_cuda_graph_enable"] = True
    options |= profile(config)
    return options


def _cudnn_version() -> str:
    for name in ("libcudnn.so.9", "libcudnn.so.8", "libcudnn.so"):
        try:
            code = ctypes.CDLL(name).cudnnGetVersion()
        except (OSError, AttributeError):
            continue
        major, rest = divmod(code, 10000) if code >= 10000 else divmod(code, 1000)
        return f"{major}.{rest // 100}.{rest % 100}"
    return "not loaded"


def describe_host() -> str:
    """The GPUs, driver, CUDA, cuDNN and TensorRT this server would run on, for the startup log."""
    try:
        import pynvml

        pynvml.nvmlInit()
        driver = pynvml.nvmlSystemGetDriverVersion()
        cuda = pynvml.nvmlSystemGetCudaDriverVersion()
        count = pynvml.nvmlDeviceGetCount()
        names = [gpu_name(i) for i in range(count)]
        gpus = f"{count} GPU(s) {names}, driver {driver}, CUDA {cuda // 1000}.{cuda % 1000 // 10}"
    except Exception:
        gpus = "GPUs unknown (no NVML)"
    return f"{gpus}, cuDNN {_cudnn_version()}, TensorRT {tensorrt_version()}"


def log_runtime(device: str) -> None:
    """The ONNX Runtime and the GPUs the models will run on, in the start-up log."""
    providers = ort.get_available_providers()
    log.info("onnxruntime %s, providers %s", ort.__version__, providers)
    if "CUDAExecutionProvider" in providers and device != "cpu":
        log.info("GPU host: %s", describe_host())
