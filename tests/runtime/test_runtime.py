"""Execution provider choice: from the config, the device setting and what is installed."""

from __future__ import annotations

import _ctypes
from pathlib import Path

import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from deepserve.server.protocol.errors import ModelLoadError
from deepserve.server.runtime import gpu_options
from deepserve.server.runtime.session_options import SessionTuning, session_tuning
from deepserve.server.runtime.sessions import (
    CPU,
    CUDA,
    TENSORRT,
    choose_providers,
    create_session,
    intra_op_threads,
)

from ..onnx_models import int_negate

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


@pytest.fixture()
def tensorrt_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """A host where ONNX Runtime's TensorRT provider library and libnvinfer load."""
    monkeypatch.setattr(gpu_options, "tensorrt_missing", lambda: None)


def test_tensorrt_when_the_config_asks(tensorrt_loads: None) -> None:
    choice = choose_providers(_config(TRT_CONFIG), "auto", GPU_BUILD)
    assert choice.names == [TENSORRT, CUDA, CPU]
    assert choice.providers[0][1]["trt_fp16_enable"] is True


def test_tensorrt_asked_but_missing_falls_back_to_cuda() -> None:
    choice = choose_providers(_config(TRT_CONFIG), "auto", [CUDA, CPU])
    assert choice.names == [CUDA, CPU]
    assert "not installed" in choice.reason


def test_tensorrt_listed_but_not_loading_falls_back_to_cuda_with_its_options() -> None:
    """onnxruntime-gpu lists TensorRT on a host without libnvinfer: the model goes to CUDA, on
    its GPU and with its options, and the log says which library did not load."""
    missing = gpu_options.tensorrt_missing()
    if missing is None:
        pytest.skip("TensorRT loads on this host")
    choice = choose_providers(_config(TRT_CONFIG), "auto", GPU_BUILD, gpu_id=1)
    assert choice.names == [CUDA, CPU]
    assert choice.providers[0] == (CUDA, {"device_id": 1})
    assert f"config asks for TensorRT but it cannot start here: {missing}" in choice.reason


def test_a_library_that_does_not_load_is_named_without_its_folder(tmp_path: Path) -> None:
    broken = tmp_path / "libbroken.so"
    broken.write_bytes(b"not a shared library")
    why = gpu_options.library_will_not_load(broken)
    assert why is not None and why.startswith("libbroken.so does not load (")
    assert str(tmp_path) not in why
    assert gpu_options.library_will_not_load(tmp_path / "libabsent.so") == (
        "libabsent.so is not installed"
    )
    assert gpu_options.library_will_not_load(Path(_ctypes.__file__)) is None  # one that loads


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


# ---- GPU options, built and checked on any machine -------------------------------------------

SERVED_CONFIG = """
name: "digits"
max_batch_size: 64
input [ { name: "image" data_type: TYPE_UINT8 dims: [ -1, -1, 1 ] } ]
output [ { name: "logits" data_type: TYPE_FP32 dims: [ 10 ] } ]
dynamic_batching { preferred_batch_size: [ 16, 32 ] }
parameters { key: "image_height" value { string_value: "28" } }
parameters { key: "image_width" value { string_value: "28" } }
optimization { execution_accelerators { gpu_execution_accelerator [
  { name: "tensorrt" parameters { key: "precision_mode" value: "FP16" }
                     parameters { key: "builder_optimization_level" value: "4" } } ] } }
"""


def test_tensorrt_profile_caches_and_precision(tmp_path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"graph one")
    facts = {"onnxruntime": "1.31.1", "tensorrt": "10.3.0", "gpu": "NVIDIA H100"}
    config = _config(SERVED_CONFIG)
    accelerator = dict(
        config.optimization.execution_accelerators.gpu_execution_accelerator[0].parameters
    )
    options = gpu_options.tensorrt_options(config, accelerator, 1, model, tmp_path / "cache", facts)
    assert options["device_id"] == 1
    assert options["trt_fp16_enable"] is True
    assert options["trt_builder_optimization_level"] == 4
    # One profile: batch 1 .. max_batch_size, opt at the largest preferred size, the image's
    # variable height and width from the task parameters.
    assert options["trt_profile_min_shapes"] == "image:1x28x28x1"
    assert options["trt_profile_opt_shapes"] == "image:32x28x28x1"
    assert options["trt_profile_max_shapes"] == "image:64x28x28x1"
    engines = Path(options["trt_engine_cache_path"])
    assert options["trt_engine_cache_enable"] and options["trt_timing_cache_enable"]
    assert engines.parent == tmp_path / "cache" / "digits"
    # The key follows the model's bytes and every fact, and nothing else.
    again = gpu_options.tensorrt_options(config, accelerator, 1, model, tmp_path / "cache", facts)
    assert again["trt_engine_cache_path"] == str(engines)
    for changed in ({"onnxruntime": "1.32.0"}, {"tensorrt": "10.4.0"}, {"gpu": "NVIDIA H200"}):
        other = gpu_options.tensorrt_options(
            config, accelerator, 1, model, tmp_path / "cache", facts | changed
        )
        assert other["trt_engine_cache_path"] != str(engines), changed
    model.write_bytes(b"graph two")
    retrained = gpu_options.tensorrt_options(
        config, accelerator, 1, model, tmp_path / "cache", facts
    )
    assert retrained["trt_engine_cache_path"] != str(engines)
    assert retrained["trt_timing_cache_path"] == options["trt_timing_cache_path"]


def test_tensorrt_asked_for_builds_its_options_from_the_config(
    tmp_path: Path, tensorrt_loads: None
) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"graph")
    choice = choose_providers(
        _config(SERVED_CONFIG), "auto", GPU_BUILD, model_file=model, engine_cache=tmp_path
    )
    trt = choice.providers[0][1]
    assert trt["trt_profile_max_shapes"] == "image:64x28x28x1"
    assert trt["trt_engine_cache_path"].startswith(str(tmp_path))


def test_warm_up_covers_the_tensorrt_profile() -> None:
    from deepserve.server.runtime.sessions import warmup_batches

    config = _config(SERVED_CONFIG)
    assert warmup_batches(config, [TENSORRT, CUDA, CPU]) == [1, 32, 64]
    assert warmup_batches(config, [CUDA, CPU]) == [1]


def test_cuda_options_from_config_parameters() -> None:
    config = _config(
        'parameters { key: "cuda_cudnn_conv_algo_search" value { string_value: "HEURISTIC" } }'
        'parameters { key: "cuda_gpu_mem_limit" value { string_value: "2147483648" } }'
        'parameters { key: "cuda_arena_extend_strategy" '
        'value { string_value: "kSameAsRequested" } }'
        'parameters { key: "cuda_use_tf32" value { string_value: "0" } }'
    )
    assert gpu_options.cuda_options(config, 2) == {
        "device_id": 2,
        "cudnn_conv_algo_search": "HEURISTIC",
        "gpu_mem_limit": "2147483648",
        "arena_extend_strategy": "kSameAsRequested",
        "use_tf32": "0",
    }
    assert choose_providers(config, "auto", GPU_BUILD, gpu_id=2).providers[0][1]["use_tf32"] == "0"
    bad = _config(
        'parameters { key: "cuda_cudnn_conv_algo_search" value { string_value: "FAST" } }'
    )
    with pytest.raises(ModelLoadError, match="cuda_cudnn_conv_algo_search must be one of"):
        gpu_options.cuda_options(bad, 0)


def test_a_gpu_the_host_lacks_is_a_clear_load_error() -> None:
    gpu_options.check_gpu_ids([0, 0, 1], 2)
    with pytest.raises(
        ModelLoadError, match=r"lists GPU \[3\], but this host has 2 GPU\(s\), 0\.\.1"
    ):
        gpu_options.check_gpu_ids([0, 3], 2)
    with pytest.raises(ModelLoadError, match="has no GPU"):
        gpu_options.check_gpu_ids([0], 0)
    gpu_options.check_gpu_ids([5], None)  # NVML cannot tell: ONNX Runtime will say


@pytest.mark.parametrize("spinning", [False, True])
def test_intra_op_spinning_is_the_servers_choice(tmp_path: Path, spinning: bool) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(int_negate())
    session = create_session(path, choose_providers(mc.ModelConfig(), "cpu"), 1, spinning)
    options = session.get_session_options()
    # Spinning between a run's operators always; after a run only when the server asks for it.
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    stops = options.get_session_config_entry("session.force_spinning_stop")
    assert stops == ("0" if spinning else "1")


def _model_config(name: str) -> mc.ModelConfig:
    path = Path(__file__).resolve().parents[2] / "models" / name / "config.pbtxt"
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def test_cuda_graphs_by_default_for_fixed_shapes_on_the_cuda_provider_alone(
    tensorrt_loads: None,
) -> None:
    """A batch size change costs the CUDA provider a re-plan; a graph a bucket does not."""
    mnist = _model_config("mnist")
    choice = choose_providers(mnist, "auto", GPU_BUILD)
    assert choice.cuda_graphs and choice.providers[0][1]["enable_cuda_graph"] == "1"
    assert "CUDA graphs a batch size" in choice.reason
    # Not where a shape varies (segmentation's image), state is carried, or TensorRT runs it.
    assert not choose_providers(_model_config("segmentation"), "auto", GPU_BUILD).cuda_graphs
    assert not choose_providers(_model_config("lstm_reader"), "auto", GPU_BUILD).cuda_graphs
    with_tensorrt = _model_config("mnist")
    with_tensorrt.MergeFrom(_config(TRT_CONFIG))
    assert choose_providers(with_tensorrt, "auto", GPU_BUILD).names[0] == TENSORRT
    assert not choose_providers(with_tensorrt, "auto", GPU_BUILD).cuda_graphs
    assert not choose_providers(mnist, "cpu", GPU_BUILD).cuda_graphs


def test_cuda_graphs_follow_the_config_when_it_says() -> None:
    off = _model_config("mnist")
    off.parameters["cuda_graphs"].string_value = "0"
    assert not choose_providers(off, "auto", GPU_BUILD).cuda_graphs
    on = _model_config("segmentation")
    on.parameters["cuda_graphs"].string_value = "1"
    assert choose_providers(on, "auto", GPU_BUILD).cuda_graphs
    assert not choose_providers(on, "auto", GPU_BUILD, cuda_graphs=False).cuda_graphs
    bad = _model_config("mnist")
    bad.parameters["cuda_graphs"].string_value = "yes"
    with pytest.raises(ModelLoadError, match="cuda_graphs must be '0', '1' or 'auto', got 'yes'"):
        choose_providers(bad, "auto", GPU_BUILD)


SPINNING = "session.intra_op.allow_spinning"


def test_graph_level_threads_and_execution_mode_reach_the_session(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(int_negate())
    config = _config(
        "optimization { graph { level: 1 } }\n"
        'parameters { key: "intra_op_thread_count" value { string_value: "1" } }\n'
        'parameters { key: "inter_op_thread_count" value { string_value: "2" } }\n'
        'parameters { key: "execution_mode" value { string_value: "parallel" } }'
    )
    tuning = session_tuning(config, 0, 8)
    assert tuning == SessionTuning(
        intra_op_threads=1, inter_op_threads=2, parallel=True, graph_level=1
    )
    options = create_session(path, choose_providers(mc.ModelConfig(), "cpu"), tuning)
    got = options.get_session_options()
    assert got.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    assert got.execution_mode == ort.ExecutionMode.ORT_PARALLEL
    assert (got.intra_op_num_threads, got.inter_op_num_threads) == (1, 2)
    # Unset: every optimisation, sequential, threads spinning within a run, as before.
    cpu = choose_providers(mc.ModelConfig(), "cpu")
    plain = create_session(path, cpu, session_tuning(_config(), 0)).get_session_options()
    assert plain.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert plain.get_session_config_entry(SPINNING) == "1"


@pytest.mark.parametrize(
    ("value", "spins"), [("0", False), ("1", True), ("", True), ("auto", True)]
)
def test_intra_op_spinning_reaches_the_session(tmp_path: Path, value: str, spins: bool) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(int_negate())
    tuning = session_tuning(_config(_parameter("intra_op_spinning", value)), 0, 8)
    assert tuning.spinning is spins
    cpu = choose_providers(mc.ModelConfig(), "cpu")
    got = create_session(path, cpu, tuning).get_session_options()
    assert got.get_session_config_entry(SPINNING) == ("1" if spins else "0")


def _parameter(key: str, value: str) -> str:
    return f'parameters {{ key: "{key}" value {{ string_value: "{value}" }} }}'


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("optimization { graph { level: 7 } }", "optimization.graph.level 7 is not one of"),
        ('parameters { key: "execution_mode" value { string_value: "fast" } }', "execution_mode"),
        (_parameter("inter_op_thread_count", "99"), "inter_op_thread_count 99 is outside 0..8"),
        (_parameter("intra_op_thread_count", "-1"), "intra_op_thread_count -1 is outside"),
        (
            _parameter("intra_op_spinning", "sometimes"),
            "intra_op_spinning must be '0' or '1', got 'so",
        ),
    ],
)
def test_bad_session_settings_are_load_errors_naming_the_field(field: str, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message):
        session_tuning(_config(field), 0, 8)
