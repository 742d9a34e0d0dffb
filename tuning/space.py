"""The configurations `deepserve tune` tries: one Point per candidate, the knobs a model config
has for it (Triton's names), and the values each knob takes on this machine."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import product

from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as mc

CPU_PRECISIONS = ("fp32", "int8")
GPU_PRECISIONS = ("fp32", "fp16", "tensorrt", "tensorrt_fp16")
SUFFIXES = {"fp32": "", "int8": "_int8", "fp16": "_fp16", "tensorrt": "", "tensorrt_fp16": ""}
KNOBS = ("precision", "max_batch_size", "instances", "threads", "queue_delay_us", "preferred",
         "graph_level")  # fmt: skip
"""Every knob `dimensions` may offer, in its order."""
GRAPH_LEVELS = (0, 1, -1)  # Triton's: all, basic and extended, basic


@dataclass(frozen=True)
class Point:
    """One configuration. preferred: dynamic_batching's preferred sizes as fractions of
    max_batch_size' (0: none; 1: max; 2: half and max)."""

    precision: str = "fp32"
    max_batch_size: int = 0
    instances: int = 1
    threads: int = 0
    queue_delay_us: int = 0
    preferred: int = 0
    graph_level: int = 0

    def key(self) -> str:
        return ",".join(f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self))

    def label(self) -> str:
        batching = (
            f"batch<={self.max_batch_size} delay {self.queue_delay_us}us "
            f"pref {['-', 'max', 'half+max'][self.preferred]}"
            if self.max_batch_size
            else "no batching"
        )
        return (
            f"{self.precision} x{self.instances} threads {self.threads or 'auto'} {batching} "
            f"graph {self.graph_level}"
        )

    @staticmethod
    def from_key(key: str) -> Point:
        values = dict(item.split("=", 1) for item in key.split(","))
        return Point(
            precision=values["precision"],
            **{k: int(v) for k, v in values.items() if k != "precision"},
        )


def default_point(config: mc.ModelConfig) -> Point:
    """The configuration the model's config.pbtxt gives."""
    threads = config.parameters.get("intra_op_thread_count")
    batching = config.dynamic_batching
    preferred = list(batching.preferred_batch_size)
    return Point(
        precision="fp32",
        max_batch_size=config.max_batch_size,
        instances=sum(max(g.count, 1) for g in config.instance_group) or 1,
        threads=int(threads.string_value or 0) if threads is not None else 0,
        queue_delay_us=batching.max_queue_delay_microseconds,
        preferred=0 if not preferred else (1 if len(preferred) == 1 else 2),
        graph_level=config.optimization.graph.level,
    )


def dimensions(
    default: Point, precisions: tuple[str, ...], cores: int | None = None, gpu: bool = False
) -> dict[str, list]:
    """Each knob's candidate values, the default's first; the order coordinate search goes.
    On a GPU the CPU's intra-op threads are not a knob (they only run what the GPU cannot)."""
    cores = cores or os.cpu_count() or 1

    def values(first, others) -> list:
        return [first, *[v for v in others if v != first]]

    dims: dict[str, list] = {"precision": values(default.precision, precisions)}
    if default.max_batch_size > 0:
        dims["max_batch_size"] = values(default.max_batch_size, [1, 4, 8, 16, 32, 64])
    dims["instances"] = values(default.instances, range(1, min(cores, 3) + 1))
    if not gpu:
        dims["threads"] = values(default.threads, sorted({1, max(cores // 2, 1), cores}))
    if default.max_batch_size > 0:
        dims["queue_delay_us"] = values(default.queue_delay_us, [0, 500, 2000, 5000])
        dims["preferred"] = values(default.preferred, [0, 1, 2])
    dims["graph_level"] = values(default.graph_level, GRAPH_LEVELS)
    return dims


def grid(dims: dict[str, list], start: Point) -> Iterator[Point]:
    """Every combination of the knobs searched (the full search); the others as in `start`."""
    names = list(dims)
    for combination in product(*(dims[n] for n in names)):
        yield dataclasses.replace(start, **dict(zip(names, combination, strict=True)))


def served_name(model: str, point: Point) -> str:
    return model + SUFFIXES[point.precision]


def point_config(base: mc.ModelConfig, point: Point, gpu: bool) -> mc.ModelConfig:
    """`base` (the config of the precision's model) with the point's knobs set."""
    config = mc.ModelConfig()
    config.CopyFrom(base)
    del config.instance_group[:]
    kind = mc.ModelInstanceGroup.KIND_GPU if gpu else mc.ModelInstanceGroup.KIND_CPU
    config.instance_group.add(count=point.instances, kind=kind)
    config.parameters["intra_op_thread_count"].string_value = str(point.threads)
    config.optimization.graph.level = point.graph_level
    if point.precision.startswith("tensorrt"):
        accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add(
            name="tensorrt"
        )
        if point.precision == "tensorrt_fp16":
            accelerator.parameters["precision_mode"] = "FP16"
    if base.max_batch_size > 0:
        config.max_batch_size = point.max_batch_size
        batching = config.dynamic_batching
        batching.max_queue_delay_microseconds = point.queue_delay_us
        del batching.preferred_batch_size[:]
        sizes = {1: [point.max_batch_size], 2: [point.max_batch_size // 2, point.max_batch_size]}
        batching.preferred_batch_size.extend(
            sorted({s for s in sizes.get(point.preferred, []) if s})
        )
    return config


def config_json(config: mc.ModelConfig) -> str:
    return json_format.MessageToJson(config, preserving_proto_field_name=True)
