"""Property-based fuzzing of config overrides (RepositoryModelLoad's `config` parameter): any
field, any value, paths that leave the model's folder, text that is not JSON. Each load is
refused with a client error or succeeds, never INTERNAL, and the server goes on serving the
model and its neighbour."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import grpc
import pytest
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from ..onnx_models import CLASSIFIER_CONFIG, DIGIT_LABELS, linear_classifier, write_model
from ..server_process import run_server
from .test_fuzz import CI_EXAMPLES, EXAMPLES, call_checked, run_property

FIELDS = {
    "max_batch_size": st.integers(-5, 1 << 33),
    "platform": st.sampled_from(["onnxruntime_onnx", "tensorrt_plan", "", "python"]),
    "backend": st.sampled_from(["onnxruntime", "python", ""]),
    "default_model_filename": st.sampled_from(
        ["model.onnx", "../x.onnx", "/etc/passwd", "missing.onnx", "labels.txt", "~/m.onnx"]
    ),
    "input": st.lists(
        st.fixed_dictionaries(
            {
                "name": st.sampled_from(["image", "x", ""]),
                "data_type": st.sampled_from(["TYPE_UINT8", "TYPE_FP32", "TYPE_STRING"]),
                "dims": st.lists(st.integers(-3, 1 << 20), max_size=3),
            }
        ),
        max_size=2,
    ),
    "output": st.lists(
        st.fixed_dictionaries(
            {
                "name": st.sampled_from(["logits", "y"]),
                "data_type": st.sampled_from(["TYPE_FP32", "TYPE_INT64"]),
                "dims": st.lists(st.integers(-1, 20), max_size=2),
                "label_filename": st.sampled_from(
                    ["labels.txt", "../../etc/hostname", "/proc/self/environ", "1", "nope.txt"]
                ),
            }
        ),
        max_size=2,
    ),
    "instance_group": st.lists(
        st.fixed_dictionaries(
            {
                "count": st.integers(-1, 64),
                "kind": st.sampled_from(["KIND_CPU", "KIND_GPU", "KIND_AUTO"]),
                "gpus": st.lists(st.integers(-1, 4), max_size=2),
            }
        ),
        max_size=2,
    ),
    "dynamic_batching": st.fixed_dictionaries(
        {
            "max_queue_delay_microseconds": st.integers(0, 1000),
            "preferred_batch_size": st.lists(st.integers(-1, 64), max_size=3),
            "priority_levels": st.integers(0, 5000),
            "default_priority_level": st.integers(0, 10),
            "default_queue_policy": st.fixed_dictionaries(
                {"max_queue_size": st.integers(0, 1 << 24)}
            ),
        }
    ),
    "parameters": st.dictionaries(
        st.sampled_from(["intra_op_thread_count", "task", "image_height"]),
        st.fixed_dictionaries({"string_value": st.sampled_from(["1", "-4", "99999", "x", ""])}),
        max_size=2,
    ),
    "version_policy": st.sampled_from(
        [{"all": {}}, {"latest": {"num_versions": 3}}, {"specific": {"versions": [1, 9]}}]
    ),
}


@st.composite
def config_overrides(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=64))  # not JSON at all
    chosen = draw(st.lists(st.sampled_from(sorted(FIELDS)), unique=True, max_size=5))
    return json.dumps({key: draw(FIELDS[key]) for key in chosen})


@pytest.mark.parametrize("examples", EXAMPLES)
def test_config_overrides_never_fail_inside(tmp_path: Path, examples: int) -> None:
    repo = tmp_path / "models"
    labels = {"labels.txt": "\n".join(DIGIT_LABELS) + "\n"}
    write_model(repo, "classifier", linear_classifier(), CLASSIFIER_CONFIG, files=labels)
    write_model(repo, "steady", linear_classifier(seed=2), CLASSIFIER_CONFIG, files=labels)
    codes: Counter = Counter()
    with (
        run_server(repo, tmp_path, "--model-control-mode", "explicit") as server,
        grpc.insecure_channel(server.url) as channel,
    ):
        stub = pb_grpc.GRPCInferenceServiceStub(channel)

        def load(config: str) -> None:
            request = pb.RepositoryModelLoadRequest(model_name="classifier")
            request.parameters["config"].string_param = config
            call_checked(stub.RepositoryModelLoad, request, codes)

        run_property(min(examples, 60) if examples == CI_EXAMPLES else examples,
                     config_overrides(), load)  # fmt: skip
        print(f"config override fuzz, {sum(codes.values())} loads: {dict(codes.most_common())}")
        stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="classifier"))
        for name in ("classifier", "steady"):
            request = pb.ModelInferRequest(model_name=name)
            request.inputs.add(name="image", datatype="UINT8", shape=[1, 8])
            request.raw_input_contents.append(bytes(8))
            assert stub.ModelInfer(request).outputs[0].shape == [1, 10]
