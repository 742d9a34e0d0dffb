"""Measure one configuration on a running server: load it (RepositoryModelLoad with the config
as an override, as Triton takes one), check its answers against the reference, then a
closed-loop load at each concurrency asked."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tritonclient.grpc as triton
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.utils import InferenceServerException

from ..loadtests.closed_loop import run_load
from . import answers
from .space import Point, config_json, point_config, served_name


@dataclass
class Bench:
    """A server, the model's configs by precision and the load's shape."""

    url: str
    model: str
    configs: dict[str, mc.ModelConfig]
    """The repository's config of each precision's model (fp32: the model's own)."""
    concurrency: list[int]
    seconds: float
    warmup_s: float = 1.0
    token: str = ""
    gpu: bool = False
    reference: list[tuple] = field(default_factory=list)
    _loaded: str = ""

    def __post_init__(self) -> None:
        self.client = triton.InferenceServerClient(self.url)
        self.headers = {"authorization": f"Bearer {self.token}"} if self.token else None
        self.inputs = answers.real_inputs(self.configs["fp32"])

    def close(self) -> None:
        self.client.close()

    def _payloads(self, name: str) -> list[bytes]:
        """One input row a request, serialized once (the load sends bytes)."""
        batching = self.configs["fp32"].max_batch_size > 0
        count = len(next(iter(self.inputs.values())))
        payloads = []
        for row in range(count):
            request = pb.ModelInferRequest(model_name=name)
            for input_name, values in self.inputs.items():
                part = values[row : row + 1] if batching else values[row]
                request.inputs.add(
                    name=input_name, datatype=answers.wire_type(part), shape=list(part.shape)
                )
                request.raw_input_contents.append(np.ascontiguousarray(part).tobytes())
            payloads.append(request.SerializeToString())
        return payloads

    def load(self, point: Point) -> str:
        """Load the point's configuration (and unload another precision's model)."""
        name = served_name(self.model, point)
        config = point_config(self.configs[point.precision], point, self.gpu)
        if self._loaded and self._loaded != name:
            self.client.unload_model(self._loaded, headers=self.headers)
        self.client.load_model(name, headers=self.headers, config=config_json(config))
        self._loaded = name
        return name

    def measure(self, point: Point) -> dict[str, Any]:
        started = time.perf_counter()
        result: dict[str, Any] = {"point": point.key(), "label": point.label()}
        try:
            name = self.load(point)
            config = point_config(self.configs[point.precision], point, self.gpu)
            got = answers.served_answers(self.client, name, config, self.inputs)
        except InferenceServerException as exc:
            result["error"] = f"{exc.status() or ''} {exc.message()}".strip()
            result["seconds"] = time.perf_counter() - started
            return result
        if not self.reference:
            self.reference = got
        result["agreement"] = answers.agreement(self.reference, got)
        same = point.precision in ("fp32", "tensorrt")
        bar = answers.SAME_PRECISION_AGREEMENT if same else answers.OTHER_PRECISION_AGREEMENT
        result["answers_ok"] = result["agreement"] >= bar
        payloads = self._payloads(name)
        metadata = (("authorization", f"Bearer {self.token}"),) if self.token else ()
        rows = {}
        for conc in self.concurrency:
            load = asyncio.run(
                run_load(self.url, payloads, conc, self.seconds, self.warmup_s, metadata=metadata)
            )
            rows[str(conc)] = {
                "throughput": load.throughput,
                "p50_ms": load.percentile(50),
                "p99_ms": load.percentile(99),
                "errors": load.errors,
                "first_error": load.first_error,
            }
        result["rows"] = rows
        result["seconds"] = time.perf_counter() - started
        return result
