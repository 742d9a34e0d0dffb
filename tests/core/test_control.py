"""The control handler and the edges' encoders, in process: the same neutral views become the
gRPC messages and the REST JSON of the protocol."""

from __future__ import annotations

import asyncio

import pytest
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as mc

from deepserve.server.batching.stats import ModelStats, RequestTiming
from deepserve.server.core.control import EXTENSIONS, Control
from deepserve.server.grpc import convert as grpc_convert
from deepserve.server.http import convert as http_convert
from deepserve.server.models.manager import ModelEntry, State, find_version
from deepserve.server.protocol.errors import ModelNotFound, ModelUnavailable
from deepserve.server.protocol.types import IndexEntry

from .fakes import FunctionScheduler, OneModel, version


def _config() -> mc.ModelConfig:
    config = mc.ModelConfig(name="digits", max_batch_size=8)
    config.input.add(name="image", data_type=mc.TYPE_UINT8, dims=[28, 28, 1])
    config.output.add(name="logits", data_type=mc.TYPE_FP32, dims=[10])
    return config


class RecordingModels(OneModel):
    """One model with versions 1 and 3; loads and unloads are recorded."""

    def __init__(self) -> None:
        scheduler = FunctionScheduler(lambda feeds: {})
        super().__init__(
            version(_config(), scheduler, number=1), version(_config(), scheduler, number=3)
        )
        self.loaded: list[tuple[str, str | None]] = []

    async def control_load(self, name: str, config_json: str | None = None) -> None:
        self.loaded.append((name, config_json))

    async def control_unload(self, name: str) -> None:
        self.loaded.append((name, None))


def test_metadata_lists_served_versions_and_the_batch_dimension() -> None:
    control = Control(RecordingModels(), "deepserve")
    metadata = control.model_metadata("digits")
    assert metadata.versions == ["1", "3"]
    assert [(t.name, t.datatype, t.shape) for t in metadata.inputs] == [
        ("image", "UINT8", [-1, 28, 28, 1])
    ]
    assert control.server_metadata().extensions == EXTENSIONS
    assert control.model_ready("digits", "3") and not control.model_ready("digits", "2")


def test_version_lookup_errors_name_the_model_and_versions() -> None:
    only = version(_config(), FunctionScheduler(lambda feeds: {}))
    entry = ModelEntry("digits", State.READY, "", {1: only})
    assert find_version(entry, "").version == 1
    with pytest.raises(ModelNotFound, match=r"version 7 is not served; served versions: \[1\]"):
        find_version(entry, "7")
    with pytest.raises(ModelNotFound, match="versions are integers"):
        find_version(entry, "latest")
    loading = ModelEntry("digits", State.LOADING, "warming up")
    with pytest.raises(ModelUnavailable, match=r"not ready .*warming up"):
        find_version(loading, "")


def test_control_passes_loads_to_the_catalog() -> None:
    catalog = RecordingModels()
    control = Control(catalog, "deepserve")
    asyncio.run(control.load("digits", '{"max_batch_size": 4}'))
    asyncio.run(control.unload("digits"))
    assert catalog.loaded == [("digits", '{"max_batch_size": 4}'), ("digits", None)]


@pytest.mark.parametrize("busy", [False, True])
def test_both_edges_encode_statistics_as_the_protocol_does(busy: bool) -> None:
    """REST's JSON is protobuf's JSON form of the gRPC message (what tritonclient.http reads)."""
    stats = ModelStats()
    if busy:
        stats.record_execution(4, 1_000, 20_000, 3_000)
        stats.record_execution(1, 500, 9_000, 700)
        stats.record_success(40_000, RequestTiming(5_000, 1_200, 20_000, 3_100, 4))
        stats.record_failure(2_000)
    view = stats.view("digits", "3")
    message = grpc_convert.statistics(view)
    expected = json_format.MessageToDict(message, preserving_proto_field_name=True)
    assert http_convert.statistics(view) == expected
    if busy:
        assert message.inference_count == 5 and message.execution_count == 2
        assert [b.batch_size for b in message.batch_stats] == [1, 4]
        assert message.inference_stats.fail.count == 1


def test_index_rows_encode_alike() -> None:
    row = IndexEntry("digits", "3", "READY", "")
    assert http_convert.index_entry(row) == {
        "name": "digits", "version": "3", "state": "READY", "reason": ""
    }  # fmt: skip
    message = grpc_convert.index_entry(row)
    assert (message.name, message.version, message.state) == ("digits", "3", "READY")
