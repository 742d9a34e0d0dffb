"""One model instance: how a merged batch reaches its ONNX Runtime session and comes back.

`PlainInstance` concatenates the jobs' arrays and calls `session.run` (ONNX Runtime allocates the
outputs, each job gets a view). `BoundInstance` is the GPU path: the jobs' rows are gathered
straight into per-instance host buffers, page-locked when CUDA is there (one copy, and the copy
to the GPU is then DMA from pinned memory, not a staged pageable copy), inputs and outputs are
bound with IOBinding and static-shape outputs come back into page-locked buffers too.
`GraphInstance` adds CUDA graphs: batches are padded up to fixed buckets (powers of two, the
preferred batch sizes and max_batch_size), each bucket with its own device buffers and captured
graph; the default on the CUDA provider for a batching model with fixed shapes.

On the CUDA provider the bound path pads each batch up to a bucket too (powers of two, the
preferred sizes, max_batch_size), all run once at load: cuDNN searches its convolution
algorithms for every new input shape, and a batcher that forms every size from 1 to 256 would
otherwise keep the GPU searching instead of serving (measured on an H200: ResNet-50 answered
nothing for seconds at 16 clients and more).

Per model, config parameters choose: `io_binding`, `pinned_buffers`, `cuda_graphs`,
`pad_batches` ("1" / "0").
"""

from __future__ import annotations

import bisect
import ctypes
import functools
import logging
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort
from tritonclient.grpc import model_config_pb2 as mc

from ..protocol.codecs import datatype_from_config, numpy_dtype
from ..protocol.errors import ModelLoadError
from ..runtime import ort_errors
from ..runtime import sessions as runtime
from ..runtime.session_options import config_flag
from .queue import Job

log = logging.getLogger(__name__)

CUDA_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


@dataclass(frozen=True)
class BatchRun:
    per_job: list[dict[str, np.ndarray]]
    started_ns: int
    input_ns: int
    infer_ns: int
    output_ns: int


class Instance(Protocol):
    def run(self, jobs: Sequence[Job], output_names: list[str]) -> BatchRun: ...

    def describe(self) -> str: ...


LARGE_RUN_BYTES = 16 << 20
"""A batch whose inputs are larger than this gives ONNX Runtime's CPU arena back after it runs.
The arena keeps the largest run's buffers for good (one segmentation request at the element
limit left 1.6 GB); shrinking after ordinary batches would make each of them allocate anew."""


def _run_options(feeds: dict[str, np.ndarray]) -> ort.RunOptions | None:
    if sum(array.nbytes for array in feeds.values()) <= LARGE_RUN_BYTES:
        return None
    options = ort.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options


def _invoke(run: Any, *args: Any) -> Any:
    """ONNX Runtime's errors as the server's: the model refusing the inputs, or a failure."""
    try:
        return run(*args)
    except Exception as exc:
        raise ort_errors.translate(exc) from exc


def _merged(jobs: Sequence[Job], name: str) -> np.ndarray:
    """One input of the batch: a lone job's array as it is, else the jobs' arrays joined."""
    if len(jobs) == 1:
        return jobs[0].feeds[name]  # nothing to merge: the decoded array goes straight in
    return np.concatenate([job.feeds[name] for job in jobs])


def _slices(jobs: Sequence[Job], outputs: dict[str, np.ndarray], copy: bool) -> list[dict]:
    """Each job's rows of the batch's outputs (copies when the buffers are used again)."""
    if len(jobs) == 1 and not copy:
        return [outputs]
    per_job, offset = [], 0
    for job in jobs:
        end = offset + job.items
        rows = {n: o[offset:end] for n, o in outputs.items()}
        per_job.append({n: r.copy() for n, r in rows.items()} if copy else rows)
        offset = end
    return per_job


class PlainInstance:
    """Concatenate, run, slice: ONNX Runtime owns the buffers (the CPU's default)."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self.session = session

    def describe(self) -> str:
        return "batches concatenated, ONNX Runtime's own buffers"

    def run(self, jobs: Sequence[Job], output_names: list[str]) -> BatchRun:
        t0 = time.perf_counter_ns()
        feeds = {name: _merged(jobs, name) for name in jobs[0].feeds}
        t1 = time.perf_counter_ns()
        outputs = _invoke(self.session.run, output_names, feeds, _run_options(feeds))
        t2 = time.perf_counter_ns()
        per_job = _slices(jobs, dict(zip(output_names, outputs, strict=True)), copy=False)
        return BatchRun(per_job, t0, t1 - t0, t2 - t1, time.perf_counter_ns() - t2)


# ---- page-locked host memory -----------------------------------------------------------------


@functools.cache
def _cudart() -> ctypes.CDLL | None:
    """The CUDA runtime ONNX Runtime's CUDA provider loaded (or can load), or None."""
    for name in ("libcudart.so.13", "libcudart.so.12", "libcudart.so"):
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def host_buffer(shape: Sequence[int], dtype: np.dtype, pinned: bool) -> tuple[np.ndarray, bool]:
    """A zeroed host array; page-locked with cudaHostRegister when asked and CUDA is there.
    Returns the array and whether it is pinned (False: plain memory, which still works)."""
    array = np.zeros(tuple(shape), dtype)
    if not pinned or array.nbytes == 0:
        return array, False
    cudart = _cudart()
    if cudart is None:
        return array, False
    pointer = ctypes.c_void_p(array.ctypes.data)
    if cudart.cudaHostRegister(pointer, ctypes.c_size_t(array.nbytes), 0) != 0:
        return array, False
    weakref.finalize(array, cudart.cudaHostUnregister, pointer)
    return array, True


# ---- the bound path ----------------------------------------------------------------------------


@dataclass(frozen=True)
class IoOptions:
    io_binding: bool
    pinned_buffers: bool
    cuda_graphs: bool
    pad_batches: bool = False


def io_options(config: mc.ModelConfig, on_gpu: bool, tunes_per_shape: bool = False) -> IoOptions:
    """From the config's parameters; defaults: IOBinding and pinned buffers on a GPU, the plain
    path on a CPU (where they measured no faster), CUDA graphs only when asked for, batches
    padded to buckets where the provider tunes per shape (CUDA's cuDNN; TensorRT's profile
    takes any batch size)."""
    options = IoOptions(
        io_binding=config_flag(config, "io_binding", on_gpu),
        pinned_buffers=config_flag(config, "pinned_buffers", on_gpu),
        cuda_graphs=config_flag(config, "cuda_graphs", False),
        pad_batches=config_flag(config, "pad_batches", tunes_per_shape)
        and config.max_batch_size > 0,
    )
    if options.cuda_graphs and not on_gpu:
        log.warning("model '%s': cuda_graphs asked for but it runs on the CPU", config.name)
        options = IoOptions(options.io_binding, options.pinned_buffers, False, options.pad_batches)
    if options.pad_batches and not options.io_binding:
        log.warning("model '%s': pad_batches needs io_binding, which is off", config.name)
        options = IoOptions(False, options.pinned_buffers, options.cuda_graphs, False)
    return options


@dataclass(frozen=True)
class _Tensor:
    name: str
    dtype: np.dtype
    dims: tuple[int, ...]

    @property
    def static(self) -> bool:
        return all(d >= 0 for d in self.dims)


def _tensors(tensors: Sequence[mc.ModelInput] | Sequence[mc.ModelOutput]) -> list[_Tensor]:
    return [
        _Tensor(t.name, numpy_dtype(datatype_from_config(t.data_type)), tuple(t.dims))
        for t in tensors
    ]


class BoundInstance:
    """Gather into (page-locked) host buffers, IOBinding in and out."""

    def __init__(
        self,
        session: ort.InferenceSession,
        config: mc.ModelConfig,
        pinned: bool,
        buckets: Sequence[int] = (),
    ) -> None:
        self.session = session
        self.buckets = sorted(buckets)
        self.rows = max(config.max_batch_size, 1)
        self.batching = config.max_batch_size > 0
        self.inputs = {t.name: t for t in _tensors(config.input)}
        self.outputs = {t.name: t for t in _tensors(config.output)}
        self.binding = session.io_binding()
        pinned_all = True
        self.staging: dict[str, np.ndarray] = {}
        self.results: dict[str, np.ndarray] = {}
        for buffers, tensors in ((self.staging, self.inputs), (self.results, self.outputs)):
            for tensor in tensors.values():
                if tensor.static and self.batching:
                    buffers[tensor.name], locked = host_buffer(
                        (self.rows, *tensor.dims), tensor.dtype, pinned
                    )
                    pinned_all &= locked
        self.pinned = pinned and pinned_all

    def describe(self) -> str:
        memory = "page-locked" if self.pinned else "pageable"
        padded = f", padded to batch sizes {self.buckets}" if self.buckets else ""
        return f"IOBinding, batches gathered into {memory} host buffers{padded}"

    def _padded_rows(self, jobs: Sequence[Job], items: int) -> int:
        """The rows to run: the smallest bucket that holds the batch, when every input is
        gathered into a buffer (the rows past the batch's are left-overs, their answers unread)."""
        if not self.buckets or items > self.buckets[-1]:
            return items
        if any(name not in self.staging for name in jobs[0].feeds):
            return items
        return self.buckets[bisect.bisect_left(self.buckets, items)]

    def _gather(self, jobs: Sequence[Job]) -> tuple[dict[str, np.ndarray], int]:
        items = sum(job.items for job in jobs)
        rows = self._padded_rows(jobs, items) if self.batching else items
        feeds = {}
        for name in jobs[0].feeds:
            buffer = self.staging.get(name)
            if buffer is None or items > len(buffer) or not self.batching:
                feeds[name] = _merged(jobs, name)
                continue
            offset = 0
            for job in jobs:
                buffer[offset : offset + job.items] = job.feeds[name]
                offset += job.items
            feeds[name] = buffer[:rows]
        return feeds, items

    def run(self, jobs: Sequence[Job], output_names: list[str]) -> BatchRun:
        t0 = time.perf_counter_ns()
        feeds, items = self._gather(jobs)
        run_rows = len(next(iter(feeds.values()))) if self.batching else items
        binding = self.binding
        binding.clear_binding_inputs()
        binding.clear_binding_outputs()
        for name, array in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(array))
        reused = []
        for name in output_names:
            buffer = self.results.get(name)
            if buffer is not None and run_rows <= len(buffer):
                rows = buffer[:run_rows]
                binding.bind_output(name, "cpu", 0, rows.dtype, list(rows.shape), rows.ctypes.data)
                reused.append(name)
            else:
                binding.bind_output(name, "cpu")
        t1 = time.perf_counter_ns()
        _invoke(self.session.run_with_iobinding, binding, _run_options(feeds))
        t2 = time.perf_counter_ns()
        if reused and len(reused) == len(output_names):
            outputs = {name: self.results[name][:items] for name in output_names}
        else:
            fresh = binding.copy_outputs_to_cpu()
            outputs = {
                name: self.results[name][:items] if name in reused else fresh[i][:items]
                for i, name in enumerate(output_names)
            }
        per_job = _slices(jobs, outputs, copy=bool(reused))
        return BatchRun(per_job, t0, t1 - t0, t2 - t1, time.perf_counter_ns() - t2)


class GraphInstance(BoundInstance):
    """CUDA graphs: one captured graph per bucket, with its own device inputs and outputs.
    Needs static shapes; the session was created with the provider's graph option on."""

    def __init__(
        self, session: ort.InferenceSession, config: mc.ModelConfig, pinned: bool, gpu_id: int = 0
    ) -> None:
        super().__init__(session, config, pinned)
        tensors = [*self.inputs.values(), *self.outputs.values()]
        if not self.batching or not all(t.static for t in tensors):
            raise ModelLoadError("cuda_graphs needs batching and static input and output shapes")
        self.buckets = padding_buckets(config)
        self.graphs: dict[int, tuple[Any, Any, dict[str, Any], dict[str, Any]]] = {}
        for bucket in self.buckets:
            device_in = {
                t.name: ort.OrtValue.ortvalue_from_shape_and_type(
                    [bucket, *t.dims], t.dtype, "cuda", gpu_id
                )
                for t in self.inputs.values()
            }
            device_out = {
                t.name: ort.OrtValue.ortvalue_from_shape_and_type(
                    [bucket, *t.dims], t.dtype, "cuda", gpu_id
                )
                for t in self.outputs.values()
            }
            binding = session.io_binding()
            for name, value in device_in.items():
                binding.bind_ortvalue_input(name, value)
            for name, value in device_out.items():
                binding.bind_ortvalue_output(name, value)
            options = ort.RunOptions()
            options.add_run_config_entry("gpu_graph_id", str(bucket))
            self.graphs[bucket] = (binding, options, device_in, device_out)

    def describe(self) -> str:
        return f"CUDA graphs for batch sizes {self.buckets}, {super().describe()}"

    def warm_up(self, runs: int = 3) -> None:
        """Run every bucket a few times: ONNX Runtime captures a graph after its first runs."""
        for binding, options, _, _ in self.graphs.values():
            for _ in range(runs):
                self.session.run_with_iobinding(binding, options)

    def run(self, jobs: Sequence[Job], output_names: list[str]) -> BatchRun:
        t0 = time.perf_counter_ns()
        items = sum(job.items for job in jobs)
        if items > self.buckets[-1]:
            return super().run(jobs, output_names)
        bucket = self.buckets[bisect.bisect_left(self.buckets, items)]
        binding, options, device_in, device_out = self.graphs[bucket]
        self._gather(jobs)  # rows past `items` keep older data: their outputs are dropped
        for name, value in device_in.items():
            value.update_inplace(self.staging[name][:bucket])
        t1 = time.perf_counter_ns()
        _invoke(self.session.run_with_iobinding, binding, options)
        t2 = time.perf_counter_ns()
        outputs = {name: device_out[name].numpy()[:items] for name in output_names}
        per_job = _slices(jobs, outputs, copy=False)
        return BatchRun(per_job, t0, t1 - t0, t2 - t1, time.perf_counter_ns() - t2)


def captures_graphs(session: ort.InferenceSession) -> bool:
    """Whether the session was made with the CUDA provider's graph capture on (by default, or
    asked for): its runs must then go through fixed buffers, one set a bucket."""
    options = session.get_provider_options().get("CUDAExecutionProvider", {})
    return str(options.get("enable_cuda_graph", "0")) == "1"


def graph_buckets(config: mc.ModelConfig) -> list[int]:
    preferred = list(config.dynamic_batching.preferred_batch_size)
    return sorted({*preferred, max(config.max_batch_size, 1)})


def padding_buckets(config: mc.ModelConfig) -> list[int]:
    """Powers of two up to max_batch_size, the preferred sizes and max_batch_size: a batch
    runs at most twice its rows, and the shapes to tune are a handful."""
    largest = max(config.max_batch_size, 1)
    powers = {1 << k for k in range(largest.bit_length()) if 1 << k <= largest}
    return sorted(powers | set(graph_buckets(config)))


def make_instance(
    session: ort.InferenceSession, config: mc.ModelConfig, gpu_id: int = 0, label: str = ""
) -> Instance:
    """The instance for a session, by where it runs and the config's parameters, warmed up:
    a graph instance over its buckets (a plain warm-up run would capture a graph of its own),
    the others with one run (and, with TensorRT, across its profile)."""
    providers = session.get_providers()
    on_gpu = any(p in CUDA_PROVIDERS for p in providers)
    tunes_per_shape = providers[0] == "CUDAExecutionProvider"
    options = io_options(config, on_gpu, tunes_per_shape)
    if options.cuda_graphs or captures_graphs(session):
        graphs = GraphInstance(session, config, options.pinned_buffers, gpu_id)
        graphs.warm_up()
        return graphs
    buckets = padding_buckets(config) if options.pad_batches else []
    runtime.warm_up(session, config, label or config.name, buckets)
    if options.io_binding:
        return BoundInstance(session, config, options.pinned_buffers, buckets)
    return PlainInstance(session)
