from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from .onnx_models import standard_repository
from .server_process import RunningServer, free_port, run_server


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `cuda` run only where onnxruntime offers the CUDA provider."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        return
    skip = pytest.mark.skip(reason="needs onnxruntime-gpu and an NVIDIA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return standard_repository(tmp_path_factory.mktemp("repo") / "models")


@pytest.fixture(scope="session")
def server(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # Shared memory on without tokens (the default turns it on only with them): the fuzz
    # tests send regions.
    with run_server(
        repository, tmp_path_factory.mktemp("logs"), "--shared-memory", "on"
    ) as running:
        yield running


@pytest.fixture(scope="session")
def bundled_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server on the committed model repository (what `make serve` serves)."""
    root = Path(__file__).resolve().parent.parent
    metrics_port, http_port = free_port(), free_port()
    with run_server(
        root / "models",
        tmp_path_factory.mktemp("bundled"),
        "--metrics-port",
        str(metrics_port),
        "--http-port",
        str(http_port),
    ) as running:
        running.metrics_port = metrics_port
        running.http_port = http_port
        yield running


@pytest.fixture(scope="session")
def client(server: RunningServer) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(server.url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def stub(server: RunningServer) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    """A raw stub, for requests tritonclient would refuse to build."""
    with grpc.insecure_channel(server.url) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)
