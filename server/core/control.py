"""Readiness, metadata, config, statistics and repository control: what both transports
answer about the models, as neutral views the edges encode (MLServer's repository handlers
are the shape)."""

from __future__ import annotations

from tritonclient.grpc import model_config_pb2 as mc

from ..._version import __version__
from ..models.catalog import ModelCatalog
from ..models.model import TensorSpec
from ..protocol.types import (
    IndexEntry,
    ModelMetadata,
    ServerMetadata,
    TensorMetadata,
    VersionStatistics,
)

PLATFORM = "onnxruntime_onnx"
EXTENSIONS = (
    "classification",
    "model_configuration",
    "model_repository",
    "statistics",
    "binary_tensor_data",
    "system_shared_memory",
)
"""The protocol's extensions this server speaks, on both transports."""


class Control:
    def __init__(self, models: ModelCatalog, server_name: str) -> None:
        self._models = models
        self._server_name = server_name

    @property
    def server_ready(self) -> bool:
        return self._models.server_ready

    def model_ready(self, name: str, version: str = "") -> bool:
        return self._models.is_ready(name, version)

    def server_metadata(self) -> ServerMetadata:
        return ServerMetadata(self._server_name, __version__, EXTENSIONS)

    def model_metadata(self, name: str, version: str = "") -> ModelMetadata:
        model = self._models.get(name, version)
        batch = [-1] if model.max_batch_size > 0 else []
        served = sorted(v.version for v in self._models.versions_of(name))

        def describe(specs: dict[str, TensorSpec]) -> list[TensorMetadata]:
            return [
                TensorMetadata(s.name, s.datatype, batch + list(s.dims)) for s in specs.values()
            ]

        return ModelMetadata(
            name=model.name,
            versions=[str(v) for v in served],
            platform=model.config.platform or PLATFORM,
            inputs=describe(model.inputs),
            outputs=describe(model.outputs),
        )

    def model_config(self, name: str, version: str = "") -> mc.ModelConfig:
        """The completed config: the repository's own format, which each edge encodes."""
        return self._models.get(name, version).config

    async def statistics(self, name: str = "", version: str = "") -> list[VersionStatistics]:
        return await self._models.statistics(name, version)

    async def index(self, ready_only: bool = False) -> list[IndexEntry]:
        return await self._models.repository_index(ready_only)

    async def load(self, name: str, config_json: str | None = None) -> None:
        await self._models.control_load(name, config_json)

    async def unload(self, name: str) -> None:
        await self._models.control_unload(name)
