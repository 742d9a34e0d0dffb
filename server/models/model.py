"""One loaded model version: its completed config, tensors, labels, instances and statistics."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort
from tritonclient.grpc import model_config_pb2 as mc

from .. import tasks
from ..batching.instance import Instance, make_instance
from ..batching.scheduler import JobScheduler, Scheduler
from ..batching.sequences import SequenceScheduler
from ..batching.stats import ModelStats
from ..observability.histograms import RequestHistograms, VersionHistograms
from ..protocol.codecs import datatype_from_config
from ..protocol.errors import ModelLoadError, TaskNotSupported
from ..protocol.generator_config import is_generator
from ..protocol.sequence_config import sequence_config
from ..runtime import gpu_options
from ..runtime import sessions as runtime
from ..runtime.session_options import SessionTuning, session_tuning
from ..settings import ServerSettings
from ..tasks import Task
from . import activation, ensemble, repository
from .autoconfig import complete_config
from .ensemble import is_ensemble
from .generators import load_generator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    dims: tuple[int, ...]
    """Dimensions without the batch dimension when the model batches; -1 is variable."""
    optional: bool = False
    finite: bool = False
    """Its values must be numbers, not NaN or infinities (the config's `finite_inputs`)."""
    bounds: tuple[int, int] | None = None
    """The lowest and highest value it takes (the config's `input_bounds`)."""

    @property
    def static(self) -> bool:
        """No variable (-1) dimension besides the batch."""
        return -1 not in self.dims


@dataclass
class ModelVersion:
    name: str
    version: int
    config: mc.ModelConfig
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    labels: dict[str, list[str]]
    scheduler: JobScheduler
    stats: ModelStats
    providers: list[str]
    histograms: RequestHistograms
    task: Task | TaskNotSupported
    """What the Vision API does with this model, or why it cannot."""
    activation_bytes_per_element: float | None = None
    """Memory its intermediate tensors take per input element (`activation`); None: unknown."""

    @property
    def max_batch_size(self) -> int:
        return self.config.max_batch_size


FLOATS = {"FP16", "BF16", "FP32", "FP64"}


INTEGERS = {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}


def _specs(
    tensors: Sequence[mc.ModelInput] | Sequence[mc.ModelOutput],
    finite: bool = False,
    bounds: dict[str, tuple[int, int]] | None = None,
) -> dict[str, TensorSpec]:
    specs = {}
    for t in tensors:
        datatype = datatype_from_config(t.data_type)
        specs[t.name] = TensorSpec(
            name=t.name,
            datatype=datatype,
            dims=tuple(t.dims),
            optional=getattr(t, "optional", False),
            finite=finite and datatype in FLOATS,
            bounds=(bounds or {}).get(t.name),
        )
    return specs


def _parameter(config: mc.ModelConfig, key: str) -> str:
    """A config parameter's value, stripped; "" when absent (read without adding the key)."""
    return config.parameters[key].string_value.strip() if key in config.parameters else ""


def _input_bounds(config: mc.ModelConfig) -> dict[str, tuple[int, int]]:
    """The config's `input_bounds`, "name:low..high,...": integer inputs whose values outside
    the range are refused (a class id past the model's classes, say), read once at load."""
    text = _parameter(config, "input_bounds")
    integers = {t.name for t in config.input if datatype_from_config(t.data_type) in INTEGERS}
    bounds: dict[str, tuple[int, int]] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, span = item.partition(":")
        low, _, high = span.partition("..")
        try:
            bounds[name] = (int(low), int(high))
        except ValueError:
            raise ModelLoadError(
                f"parameter input_bounds: '{item}' is not name:low..high (e.g. class:0..9)"
            ) from None
        if name not in integers:
            raise ModelLoadError(
                f"parameter input_bounds names '{name}', which is not an integer input of the "
                f"model (those are {sorted(integers)})"
            )
        if bounds[name][0] > bounds[name][1]:
            raise ModelLoadError(f"parameter input_bounds: '{item}' has low above high")
    return bounds


def _finite_inputs(config: mc.ModelConfig) -> bool:
    """The config's `finite_inputs`: "1" refuses NaN and infinities in floating-point inputs
    (a policy would act on them all the same)."""
    value = _parameter(config, "finite_inputs")
    if value not in ("", "0", "1"):
        raise ModelLoadError(f"parameter finite_inputs must be '0' or '1', got '{value}'")
    return value == "1"


def _instance_gpu_ids(config: mc.ModelConfig) -> list[int]:
    """One entry per instance: the GPU it should use (instance_group gpus, round robin)."""
    ids: list[int] = []
    for group in config.instance_group or [mc.ModelInstanceGroup(count=1)]:
        gpus = list(group.gpus) or [0]
        count = group.count or 1
        ids.extend(gpus[i % len(gpus)] for i in range(count))
    return ids


def _session_with_graphs_if_possible(
    path: Path,
    choice: runtime.ProviderChoice,
    threads: SessionTuning,
    settings: ServerSettings,
    config: mc.ModelConfig,
    gpu_id: int,
    label: str,
) -> ort.InferenceSession:
    """The session; where CUDA graphs are on by default (not asked for) and ONNX Runtime
    cannot capture the model (an operator left to the CPU, say), the same without them."""
    try:
        return runtime.create_session(path, choice, threads, settings.intra_op_spinning)
    except ModelLoadError as exc:
        if not choice.cuda_graphs or gpu_options.cuda_graphs_setting(config) is not None:
            raise
        log.warning("%s: no CUDA graphs (%s); batches padded to fixed sizes instead", label, exc)
    without = _providers(config, settings, path, gpu_id, cuda_graphs=False)
    return runtime.create_session(path, without, threads, settings.intra_op_spinning)


def _providers(
    config: mc.ModelConfig,
    settings: ServerSettings,
    path: Path,
    gpu_id: int,
    cuda_graphs: bool | None = None,
) -> runtime.ProviderChoice:
    return runtime.choose_providers(
        config,
        settings.device,
        gpu_id=gpu_id,
        model_file=path,
        engine_cache=settings.engine_cache,
        cuda_graphs=cuda_graphs,
    )


def _check_gpu_fallback(label: str, wanted: list[str], got: list[str], device: str) -> None:
    """ONNX Runtime drops a GPU provider it cannot start (CUDA / cuDNN libraries missing or of
    another major version) and runs on the CPU: say so, or refuse when a GPU was demanded."""
    if runtime.CUDA in wanted and runtime.CUDA not in got:
        message = (
            f"{label}: onnxruntime could not start the CUDA provider (are CUDA and cuDNN of "
            f"the versions this onnxruntime-gpu was built for installed?); providers now {got}"
        )
        if device == "cuda":
            raise ModelLoadError(message)
        log.warning("%s; running on the CPU", message)


def _note_activation_estimate(config: mc.ModelConfig, model_file: Path) -> None:
    """Puts the graph's estimate in the completed config (which a split server's front ends
    receive too), unless the config gives its own."""
    if activation.PARAMETER in config.parameters:
        return
    estimate = activation.bytes_per_element(model_file)
    if estimate is not None:
        config.parameters[activation.PARAMETER].string_value = f"{estimate:.2f}"


def _activation_figure(config: mc.ModelConfig) -> float | None:
    text = (
        config.parameters[activation.PARAMETER].string_value
        if (activation.PARAMETER in config.parameters)
        else ""
    )
    try:
        figure = float(text)
    except ValueError:
        return None
    return figure if math.isfinite(figure) and figure > 0 else None


def load_version(
    model_dir: Path,
    config: mc.ModelConfig,
    version: int,
    settings: ServerSettings,
    executor: Executor,
    lookup: ensemble.Lookup | None = None,
) -> ModelVersion:
    """Build every instance of one version and warm each up. Blocking: call from a thread.
    `lookup`: the models serving now, which an ensemble's steps are checked against."""
    if is_ensemble(config):
        if lookup is None:
            raise ModelLoadError(f"ensemble '{config.name}' needs the models it chains")
        steps = ensemble.plan(config, lookup)
        log.info("ensemble '%s' version %d: %s", config.name, version,
                 " -> ".join(s.label for s in steps))  # fmt: skip
        return assemble_version(
            config,
            version,
            {},
            ensemble.EnsembleScheduler(config.name, steps, lookup),
            ModelStats(),
            [],
            VersionHistograms.of(config.name, version),
        )
    if is_generator(config):
        loaded = load_generator(model_dir, config, version, settings, executor)
        return assemble_version(
            loaded.config,
            version,
            {},
            loaded.loop,
            loaded.stats,
            loaded.providers,
            loaded.histograms,
        )
    if config.model_transaction_policy.decoupled:
        raise ModelLoadError(
            "model_transaction_policy decoupled is for text generators (backend 'seq2seq'); "
            "an ONNX model answers each request once"
        )
    label = f"model '{config.name}' version {version}"
    path = repository.model_file(model_dir, version, config)
    threads = session_tuning(config, settings.intra_op_threads, settings.max_intra_op_threads)
    instances: list[Instance] = []
    completed = config
    providers: list[str] = []
    gpu_ids = _instance_gpu_ids(config)
    for gpu_id in gpu_ids:
        choice = _providers(config, settings, path, gpu_id)
        if runtime.CUDA in choice.names:
            gpu_options.check_gpu_ids(gpu_ids, gpu_options.gpu_count())
        session = _session_with_graphs_if_possible(
            path, choice, threads, settings, config, gpu_id, label
        )
        _check_gpu_fallback(label, choice.names, session.get_providers(), settings.device)
        if not instances:
            completed = complete_config(
                config,
                session.get_inputs(),
                session.get_outputs(),
                settings.default_max_batch_size,
            )
            providers = session.get_providers()
            _note_activation_estimate(completed, path)
            log.info(
                "%s: execution providers %s (%s), intra-op threads %s",
                label,
                providers,
                choice.reason,
                threads or "ONNX Runtime default",
            )
        instances.append(make_instance(session, completed, gpu_id, label))
    labels = repository.read_labels(model_dir, completed)
    stats = ModelStats()
    histograms = VersionHistograms.of(config.name, version)
    sequences = sequence_config(completed, len(instances))
    scheduler: JobScheduler
    if sequences is not None:
        scheduler = SequenceScheduler(
            config.name,
            completed,
            sequences,
            instances,
            executor,
            stats,
            settings.default_max_queue_size,
            histograms,
        )
        batching = (
            f"sequence batching ({sequences.strategy}, {sequences.max_sequences} sequences "
            f"at once, up to {completed.max_batch_size} a batch)"
        )
    else:
        scheduler = Scheduler(
            config.name,
            completed,
            instances,
            executor,
            stats,
            settings.default_max_queue_size,
            histograms,
            settings.max_queue_wait_ms,
        )
        batching = (
            f"dynamic batching up to {completed.max_batch_size}"
            if scheduler.batching
            else "no dynamic batching"
        )
    log.info("%s: %s, %d instance(s): %s", label, batching, len(instances), instances[0].describe())
    return assemble_version(completed, version, labels, scheduler, stats, providers, histograms)


def assemble_version(
    config: mc.ModelConfig,
    version: int,
    labels: dict[str, list[str]],
    scheduler: JobScheduler,
    stats: ModelStats,
    providers: list[str],
    histograms: RequestHistograms,
) -> ModelVersion:
    """A model version from its completed config and what runs it (here, or in an engine)."""
    return ModelVersion(
        name=config.name,
        version=version,
        config=config,
        inputs=_specs(config.input, _finite_inputs(config), _input_bounds(config)),
        outputs=_specs(config.output),
        labels=labels,
        scheduler=scheduler,
        stats=stats,
        providers=providers,
        histograms=histograms,
        task=tasks.for_model(
            config.name,
            {k: v.string_value for k, v in config.parameters.items()},
            [t.name for t in config.input],
            [t.name for t in config.output],
            labels,
        ),
        activation_bytes_per_element=_activation_figure(config),
    )
