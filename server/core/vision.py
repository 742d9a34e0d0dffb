"""The Vision API's core, the same for gRPC and HTTP: find the model, check it does the task,
open the images from their headers (limits first), decode and resize them on the Vision API's
own threads, or its own processes for costly images (within a CPU budget, stopped when the
caller goes away), batch them through the model's scheduler with tensor requests, post-process."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ..models.catalog import ModelCatalog
from ..models.model import ModelVersion
from ..protocol.errors import InvalidInput, TaskNotSupported
from ..protocol.types import ImageSource
from ..settings import ServerSettings
from ..tasks import Task
from . import imaging
from .dataplane import DataPlane
from .decode_lanes import DecodeLanes, LaneSizes
from .decode_processes import DecodeJob, worker_cpus
from .decode_work import DecodeBounds, Stop


@dataclass(frozen=True)
class ModelSummary:
    name: str
    versions: list[str]
    ready: bool
    task: str = ""
    image_height: int = 0
    image_width: int = 0
    image_channels: int = 0
    labels: tuple[str, ...] = ()


class Vision:
    def __init__(self, dataplane: DataPlane, manager: ModelCatalog, settings: ServerSettings):
        self._dataplane = dataplane
        self._manager = manager
        self.limits = imaging.ImageLimits(
            max_pixels=settings.max_image_pixels,
            max_request_bytes=settings.max_request_image_bytes,
            formats=tuple(f.upper() for f in settings.image_formats),
            work=DecodeBounds(
                max_scans=settings.max_image_scans,
                max_strips=settings.max_image_strips,
                cpu_ms=settings.max_image_decode_ms,
            ),
        )
        self.response_budget = settings.response_budget_bytes
        cores = os.cpu_count() or 1
        heavy_cpus = worker_cpus(settings.decode_worker_cpus)
        self._lanes = DecodeLanes(
            LaneSizes(
                light_threads=settings.decode_threads or max(cores, 2),
                heavy_processes=max(cores // 2, 1) if not heavy_cpus else len(heavy_cpus),
                heavy_waiting=settings.heavy_decodes_waiting,
                light_waiting=settings.decodes_waiting,
                heavy_ms=settings.heavy_decode_ms,
                heavy_cpus=heavy_cpus,
            )
        )

    def close(self) -> None:
        self._lanes.close()

    def model_for(self, wanted: str, name: str, version: str) -> tuple[ModelVersion, Task]:
        model = self._manager.get(name, version)
        task = model.task
        if isinstance(task, TaskNotSupported):
            raise task
        if task.name != wanted:
            raise TaskNotSupported(f"model '{model.name}' does {task.name}, not {wanted}")
        return model, task

    async def run(
        self,
        wanted: str,
        name: str,
        version: str,
        images: list[ImageSource],
        options: Any,
        deadline_s: float | None = None,
    ) -> tuple[ModelVersion, list]:
        """(the model version that answered, one result per image)."""
        model, task = self.model_for(wanted, name, version)
        if not images:
            raise InvalidInput("the request has no images")
        limits, spec = self.limits, task.image

        def open_images(stop: Stop) -> list[Image.Image]:
            opened = imaging.open_all(images, limits, stop)
            task.check_sizes([(picture.height, picture.width) for picture in opened], options)
            return opened

        def decode(
            opened: list[Image.Image], stop: Stop
        ) -> tuple[np.ndarray, list[tuple[int, int]]]:
            return imaging.prepare(opened, spec.height, spec.width, spec.channels)

        async def prepare() -> tuple[np.ndarray, list[tuple[int, int]]]:
            job = DecodeJob(images, limits, spec.height, spec.width, spec.channels)
            return await self._lanes.run(open_images, decode, job)

        results = await self._dataplane.run_images(
            model,
            len(images),
            prepare,
            spec.name,
            task.output_names,
            lambda outputs, sizes: task.finish(outputs, sizes, options),
            deadline_s,
        )
        return model, results

    def models(self) -> list[ModelSummary]:
        versions: dict[str, list[str]] = {}
        ready: dict[str, bool] = {}
        for row in self._manager.index():
            versions.setdefault(row.name, [])
            if row.version:
                versions[row.name].append(row.version)
            ready[row.name] = ready.get(row.name, False) or row.state == "READY"
        summaries = []
        for name, served in versions.items():
            task = self._manager.get(name).task if ready[name] else None
            if isinstance(task, Task):
                summaries.append(
                    ModelSummary(
                        name, served, True, task.name, task.image.height, task.image.width,
                        task.image.channels, tuple(task.labels),
                    )
                )  # fmt: skip
            else:
                summaries.append(ModelSummary(name, served, ready[name]))
        return summaries
