"""Execution provider choice: from the config, the device setting and what is installed."""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from deepserve.server.errors import ModelLoadError
from deepserve.server.runtime import CPU, CUDA, TENSORRT, choose_providers, intra_op_threads

GPU_BUILD = [TENSORRT, CUDA, CPU]
CPU_BUILD = [CPU]


def _config(text: str = "") -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


TRT_CONFIG = """
optimization { execution_accelerators { gpu_execution_accelerator [
  { name: "tensorrt" parameters { key: "precision_mode" value: "FP16" } } ] } }
"""


def test_cpu_build_runs_on_cpu() -> None:
    choice = choose_providers(_config(), "auto", CPU_BUILD)
    assert choice.names == [CPU]
    assert "not installed" in choice.reason


def test_gpu_build_uses_cuda_then_cpu_without_tensorrt_unless_asked() -> None:
    choice = choose_providers(_config(), "auto", GPU_BUILD, gpu_id=1)
    assert choice.names == [CUDA, CPU]
    assert choice.providers[0] == (CUDA, {"device_id": 1})
    assert "TensorRT not asked for" in choice.reason


def test_tensorrt_when_the_config_asks() -> None:
    choice = choose_providers(_config(TRT_CONFIG), "auto", GPU_BUILD)
    assert choice.names == [TENSORRT, CUDA, CPU]
    assert choice.providers[0][1]["trt_fp16_enable"] is True


def test_tensorrt_asked_but_missing_falls_back_to_cuda() -> None:
    choice = choose_providers(_config(TRT_CONFIG), "auto", [CUDA, CPU])
    assert choice.names == [CUDA, CPU]
    assert "not installed" in choice.reason


def test_cpu_device_or_cpu_instances_force_cpu() -> None:
    assert choose_providers(_config(), "cpu", GPU_BUILD).names == [CPU]
    kind_cpu = _config("instance_group [ { kind: KIND_CPU } ]")
    assert choose_providers(kind_cpu, "auto", GPU_BUILD).names == [CPU]


def test_gpu_demanded_without_cuda_fails_the_load() -> None:
    with pytest.raises(ModelLoadError, match="onnxruntime-gpu"):
        choose_providers(_config(), "cuda", CPU_BUILD)
    with pytest.raises(ModelLoadError):
        choose_providers(_config("instance_group [ { kind: KIND_GPU } ]"), "auto", CPU_BUILD)


def test_intra_op_threads_parameter_overrides_the_default() -> None:
    assert intra_op_threads(_config(), 3) == 3
    config = _config('parameters { key: "intra_op_thread_count" value { string_value: "2" } }')
    assert intra_op_threads(config, 3) == 2
    bad = _config('parameters { key: "intra_op_thread_count" value { string_value: "many" } }')
    with pytest.raises(ModelLoadError, match="many"):
        intra_op_threads(bad, 0)
