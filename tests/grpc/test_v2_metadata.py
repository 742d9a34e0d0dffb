"""Server and model metadata, config, health and reflection over the real server."""

from __future__ import annotations

import grpc
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc


def test_live_ready_and_server_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata.name == "deepserve"
    assert metadata.version
    assert set(metadata.extensions) == {
        "classification",
        "model_configuration",
        "model_repository",
        "statistics",
        "binary_tensor_data",
        "system_shared_memory",
    }


def test_model_metadata_has_batch_dimension(client: triton.InferenceServerClient) -> None:
    metadata = client.get_model_metadata("add_sub")
    assert metadata.name == "add_sub"
    assert list(metadata.versions) == ["1"]
    assert metadata.platform == "onnxruntime_onnx"
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
        ("INPUT0", "FP32", [-1, 16]),
        ("INPUT1", "FP32", [-1, 16]),
    ]
    assert [t.name for t in metadata.outputs] == ["OUTPUT0", "OUTPUT1"]
    strings = client.get_model_metadata("strings")
    assert [(t.datatype, list(t.shape)) for t in strings.inputs] == [("BYTES", [-1])]
    versioned = client.get_model_metadata("versioned")
    assert list(versioned.versions) == ["1", "3"]


def test_model_config_written_and_auto_completed(client: triton.InferenceServerClient) -> None:
    written = client.get_model_config("add_sub").config
    assert written.max_batch_size == 8
    assert written.instance_group[0].count == 2
    auto = client.get_model_config("negate").config
    assert auto.name == "negate" and auto.platform == "onnxruntime_onnx"
    assert auto.max_batch_size == 32  # a symbolic leading dimension means the model batches
    assert [(t.name, list(t.dims)) for t in auto.input] == [("x", [3])]
    assert [(t.name, list(t.dims)) for t in auto.output] == [("y", [3])]
    labelled = client.get_model_config("classifier").config
    assert labelled.output[0].label_filename == "labels.txt"


def test_repository_index_lists_every_version(client: triton.InferenceServerClient) -> None:
    rows = {(m.name, m.version): m.state for m in client.get_model_repository_index().models}
    assert rows == {
        ("add_sub", "1"): "READY",
        ("classifier", "1"): "READY",
        ("negate", "1"): "READY",
        ("strings", "1"): "READY",
        ("versioned", "1"): "READY",
        ("versioned", "3"): "READY",
    }


def test_health_service_overall_and_per_model(server) -> None:
    with grpc.insecure_channel(server.url) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        serving = health_pb2.HealthCheckResponse.SERVING
        assert health.Check(health_pb2.HealthCheckRequest(service="")).status == serving
        assert health.Check(health_pb2.HealthCheckRequest(service="add_sub")).status == serving
        assert (
            health.Check(
                health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService")
            ).status
            == serving
        )
        try:
            health.Check(health_pb2.HealthCheckRequest(service="not_a_model"))
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.NOT_FOUND
        else:
            raise AssertionError("an unknown service must be NOT_FOUND")


def test_reflection_lists_services(server) -> None:
    with grpc.insecure_channel(server.url) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        response = next(iter(stub.ServerReflectionInfo(iter([request]))))
        names = {s.name for s in response.list_services_response.service}
    assert "inference.GRPCInferenceService" in names
    assert "grpc.health.v1.Health" in names


def test_large_messages_are_accepted(client: triton.InferenceServerClient) -> None:
    """A request above gRPC's 4 MiB default goes through (default limit is 64 MiB)."""
    import numpy as np

    text = np.array([b"x" * (3 * 1024 * 1024)] * 2, dtype=object)
    tensor = triton.InferInput("text", [2], "BYTES")
    tensor.set_data_from_numpy(text)
    echoed = client.infer("strings", [tensor]).as_numpy("echo")
    assert [len(item) for item in echoed] == [3 * 1024 * 1024] * 2
