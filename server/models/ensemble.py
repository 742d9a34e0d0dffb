"""Ensembles in Triton's format: a config with `platform: "ensemble"` and
`ensemble_scheduling { step [...] }` chains models, each step's `input_map` naming which of the
ensemble's tensors feed its model's inputs and `output_map` where its outputs go.

The plan is checked at load, against the models serving then: every step's model and version,
the inputs it must be given and the outputs it has, each tensor made once and read only after it
is made (no cycle), datatypes and fixed dimensions agreeing between the maker and the reader.
Errors name the step. At run time each step goes through its own model's scheduler, so steps of
many ensemble calls batch together in that model's dynamic batcher; tensors pass from step to
step as arrays in this process, never encoded again. Steps with nothing between them run at
once. A step's model is looked up at each call: one reloaded is used at once, one unloaded makes
the ensemble's calls fail naming the step (and the ensemble not ready)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from ..batching.queue import NoQueue
from ..batching.scheduler import JobResult
from ..batching.sequences import SequenceStep
from ..batching.stats import RequestTiming
from ..observability import request_context, tracing
from ..protocol import codecs
from ..protocol.errors import InvalidInput, ModelLoadError, ServingError
from .repository import ENSEMBLE_PLATFORM

if TYPE_CHECKING:
    from .model import ModelVersion, TensorSpec

Lookup = Callable[[str, str], "ModelVersion"]


def is_ensemble(config: mc.ModelConfig) -> bool:
    return config.platform == ENSEMBLE_PLATFORM


@dataclass(frozen=True)
class Step:
    number: int
    """1-based, as a person counts the config's steps."""
    model: str
    version: str
    """"" for the newest."""
    inputs: dict[str, str]
    """The step model's input -> the ensemble tensor it reads."""
    outputs: dict[str, str]
    """The step model's output -> the ensemble tensor it makes."""

    @property
    def label(self) -> str:
        return f"step {self.number} (model '{self.model}')"


@dataclass(frozen=True)
class _Made:
    """Where an ensemble tensor comes from, and what is known of it."""

    by: str
    datatype: str
    dims: tuple[int, ...]
    batched: bool


def plan(config: mc.ModelConfig, get: Lookup) -> list[Step]:
    """The steps in an order where each runs after the steps it reads from."""
    name = config.name
    if config.HasField("dynamic_batching") or config.HasField("sequence_batching"):
        raise ModelLoadError(
            f"ensemble '{name}' cannot batch itself: its steps' models batch (remove its "
            "dynamic_batching / sequence_batching)"
        )
    if not config.input or not config.output:
        raise ModelLoadError(f"ensemble '{name}' must declare its inputs and outputs")
    if not config.ensemble_scheduling.step:
        raise ModelLoadError(f"ensemble '{name}' has no ensemble_scheduling steps")
    batched = config.max_batch_size > 0
    made: dict[str, _Made] = {
        t.name: _Made(
            "the ensemble's inputs",
            codecs.datatype_from_config(t.data_type),
            tuple(t.dims),
            batched,
        )
        for t in config.input
    }
    steps: list[Step] = []
    for number, entry in enumerate(config.ensemble_scheduling.step, start=1):
        version = "" if entry.model_version <= 0 else str(entry.model_version)
        maps = dict(entry.input_map), dict(entry.output_map)
        step = Step(number, entry.model_name, version, *maps)
        if step.model == name:
            raise ModelLoadError(f"ensemble '{name}' {step.label}: an ensemble cannot run itself")
        try:
            model = get(step.model, version)
        except ServingError as exc:
            raise ModelLoadError(f"ensemble '{name}' {step.label}: {exc}") from exc
        if model.config.model_transaction_policy.decoupled or model.config.HasField(
            "sequence_batching"
        ):
            raise ModelLoadError(
                f"ensemble '{name}' {step.label}: a text generator or a sequence model cannot "
                "be a step (each step answers once, with no state between calls)"
            )
        _check_names(name, step, model)
        for output, tensor in step.outputs.items():
            if tensor in made:
                raise ModelLoadError(
                    f"ensemble '{name}' {step.label} makes '{tensor}', which "
                    f"{made[tensor].by} already make: each tensor is made once"
                )
            spec = model.outputs[output]
            made[tensor] = _Made(step.label, spec.datatype, spec.dims, model.max_batch_size > 0)
        steps.append(step)
    for step in steps:
        model = get(step.model, step.version)
        for model_input, tensor in step.inputs.items():
            if tensor not in made:
                raise ModelLoadError(
                    f"ensemble '{name}' {step.label} reads '{tensor}', which no step and no "
                    "ensemble input makes"
                )
            _check_agree(name, f"{step.label} input '{model_input}'", made[tensor],
                         model.inputs[model_input], model.max_batch_size > 0)  # fmt: skip
    for output in config.output:
        if output.name not in made:
            raise ModelLoadError(f"ensemble '{name}' output '{output.name}': no step makes it")
        if codecs.datatype_from_config(output.data_type) != made[output.name].datatype:
            raise ModelLoadError(
                f"ensemble '{name}' output '{output.name}' is declared "
                f"{codecs.datatype_from_config(output.data_type)}, but {made[output.name].by} "
                f"makes {made[output.name].datatype}"
            )
    return _in_order(name, steps, made)


def _check_names(name: str, step: Step, model: ModelVersion) -> None:
    for model_input in step.inputs:
        if model_input not in model.inputs:
            raise ModelLoadError(
                f"ensemble '{name}' {step.label}: input_map names '{model_input}', which the "
                f"model does not take (it takes {sorted(model.inputs)})"
            )
    missing = [n for n, s in model.inputs.items() if not s.optional and n not in step.inputs]
    if missing:
        raise ModelLoadError(
            f"ensemble '{name}' {step.label}: input_map gives nothing for {missing}"
        )
    for output in step.outputs:
        if output not in model.outputs:
            raise ModelLoadError(
                f"ensemble '{name}' {step.label}: output_map names '{output}', which the model "
                f"does not make (it makes {sorted(model.outputs)})"
            )


def _check_agree(name: str, where: str, made: _Made, spec: TensorSpec, batches: bool) -> None:
    if made.datatype != spec.datatype:
        raise ModelLoadError(
            f"ensemble '{name}' {where} takes {spec.datatype}, but {made.by} makes {made.datatype}"
        )
    given = made.dims if made.batched == batches else None
    if given is not None and len(given) == len(spec.dims):
        for have, want in zip(given, spec.dims, strict=True):
            if have >= 0 and want >= 0 and have != want:
                raise ModelLoadError(
                    f"ensemble '{name}' {where} takes dims {list(spec.dims)}, but {made.by} "
                    f"makes {list(given)}"
                )


def _in_order(name: str, steps: list[Step], made: dict[str, _Made]) -> list[Step]:
    """Kahn's order over 'reads what another makes'; a cycle is a load error naming it."""
    maker = {tensor: step.number for step in steps for tensor in step.outputs.values()}
    waits = {s.number: {maker[t] for t in s.inputs.values() if t in maker} for s in steps}
    ordered: list[Step] = []
    left = {s.number: s for s in steps}
    while left:
        ready = [s for n, s in left.items() if not waits[n] & left.keys()]
        if not ready:
            cycle = ", ".join(left[n].label for n in sorted(left))
            raise ModelLoadError(f"ensemble '{name}': its steps read each other's outputs in a "
                                 f"cycle: {cycle}")  # fmt: skip
        for step in ready:
            ordered.append(step)
            del left[step.number]
    del made
    return ordered


class EnsembleScheduler:
    """The JobScheduler of an ensemble version: runs its steps through their models'
    schedulers."""

    batching = False
    queue = NoQueue()

    def __init__(self, name: str, steps: list[Step], get: Lookup) -> None:
        self.name = name
        self.steps = steps
        self._get = get
        self._retired = False

    def step_models(self) -> Iterator[tuple[Step, ModelVersion | ServingError]]:
        """Each step's model as served now, or why it is not."""
        for step in self.steps:
            try:
                yield step, self._get(step.model, step.version)
            except ServingError as exc:
                yield step, exc

    async def submit(
        self,
        feeds: dict[str, np.ndarray],
        items: int,
        output_names: Sequence[str],
        priority: int = 0,
        timeout_us: int = 0,
        deadline_s: float | None = None,
        sequence: SequenceStep | None = None,
    ) -> JobResult:
        if sequence is not None:
            raise InvalidInput(f"ensemble '{self.name}' takes no sequence controls")
        pool = dict(feeds)
        timings: list[JobResult] = []
        done: set[int] = set()
        while len(done) < len(self.steps):
            ready = [s for s in self.steps if s.number not in done
                     and all(t in pool for t in s.inputs.values())]  # fmt: skip
            results = await asyncio.gather(
                *(self._run(s, pool, priority, timeout_us, deadline_s) for s in ready)
            )
            for step, result in zip(ready, results, strict=True):
                for output, tensor in step.outputs.items():
                    pool[tensor] = result.outputs[output]
                timings.append(result)
                done.add(step.number)
        return JobResult(
            outputs={name: pool[name] for name in output_names},
            queue_ns=sum(r.queue_ns for r in timings),
            batch_input_ns=sum(r.batch_input_ns for r in timings),
            infer_ns=sum(r.infer_ns for r in timings),
            batch_output_ns=sum(r.batch_output_ns for r in timings),
            batch_items=items,
        )

    async def _run(
        self,
        step: Step,
        pool: dict[str, np.ndarray],
        priority: int,
        timeout_us: int,
        deadline_s: float | None,
    ) -> JobResult:
        try:
            model = self._get(step.model, step.version)
        except ServingError as exc:
            raise type(exc)(f"ensemble '{self.name}' {step.label}: {exc}") from exc
        feeds = {model_input: pool[tensor] for model_input, tensor in step.inputs.items()}
        started = time.perf_counter_ns()
        record = request_context.current.get()
        span = tracing.start_step(record.span if record else None, step.label, step.model)
        if span is not None and record is not None:
            # This step runs in its own task: its scheduler's spans go under the step's.
            request_context.current.set(dataclasses.replace(record, span=span))
        try:
            items = _check_feeds(self.name, step, model, feeds)
            result = await model.scheduler.submit(
                feeds, items, list(step.outputs), priority, timeout_us, deadline_s
            )
        except ServingError as exc:
            model.stats.record_failure(time.perf_counter_ns() - started)
            raise type(exc)(f"ensemble '{self.name}' {step.label}: {exc}") from exc
        finally:
            if span is not None:
                span.end()
        total = time.perf_counter_ns() - started
        timing = RequestTiming(result.queue_ns, result.batch_input_ns, result.infer_ns,
                               result.batch_output_ns, result.batch_items)  # fmt: skip
        model.stats.record_success(total, timing)
        model.histograms.observe_request(total, timing.queue_ns, timing.batch_items)
        return result

    def reserve(
        self, items: int, deadline_s: float | None = None
    ) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def retire(self) -> None:
        self._retired = True

    def backlog_ns(self) -> float:
        """Nothing queues in an ensemble itself: its steps' batchers judge their own waits."""
        return 0.0

    def item_ns(self) -> float:
        return 0.0


def _check_feeds(name: str, step: Step, model: ModelVersion, feeds: dict[str, np.ndarray]) -> int:
    """The step's batch size; InvalidInput naming the step when a tensor made at run time
    does not fit its model (a variable dimension the load could not check)."""
    batches = model.max_batch_size > 0
    items = 1
    for model_input, array in feeds.items():
        spec = model.inputs[model_input]
        shape = array.shape[1:] if batches else array.shape
        fits = len(shape) == len(spec.dims) and all(
            want < 0 or have == want for have, want in zip(shape, spec.dims, strict=True)
        )
        if not fits or (batches and not 1 <= array.shape[0] <= model.max_batch_size):
            batch = f" with a batch of 1..{model.max_batch_size}" if batches else ""
            raise InvalidInput(
                f"input '{model_input}' of shape {list(array.shape)} does not fit dims "
                f"{list(spec.dims)}{batch}"
            )
        if batches:
            items = array.shape[0]
    return items
