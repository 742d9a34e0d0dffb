"""Ensembles in Triton's format, served: a chain of three models (two in parallel, then one
that reads both) called through tritonclient like any model, its steps batched together across
calls in their own models' batchers and counted in their statistics; bad plans refused at load
naming the step; an unloaded step makes the ensemble not ready and its calls fail naming it."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.http as tritonhttp
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc
from tritonclient.utils import InferenceServerException

from ..grpc.test_fuzz import EXAMPLES, call_checked, run_property
from ..onnx_models import accumulator, accumulator_config, add_constant, add_sub, write_model
from ..server_process import free_port, run_server

ADD_CONFIG = """
max_batch_size: 8
dynamic_batching { max_queue_delay_microseconds: 2000 }
input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""
ADD_SUB_CONFIG = """
max_batch_size: 8
dynamic_batching { }
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
        { name: "INPUT1" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
         { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""


def ensemble_config(steps: str, output_type: str = "TYPE_FP32") -> str:
    return f"""
platform: "ensemble"
max_batch_size: 8
input [ {{ name: "x" data_type: TYPE_FP32 dims: [ 4 ] }} ]
output [ {{ name: "sum" data_type: {output_type} dims: [ 4 ] }},
         {{ name: "diff" data_type: TYPE_FP32 dims: [ 4 ] }} ]
ensemble_scheduling {{ {steps} }}
"""


def step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> str:
    maps = [f'input_map {{ key: "{k}" value: "{v}" }}' for k, v in inputs.items()]
    maps += [f'output_map {{ key: "{k}" value: "{v}" }}' for k, v in outputs.items()]
    return f'step {{ model_name: "{model}" model_version: -1 {" ".join(maps)} }}'


CHAIN = " ".join([
    step("add_two", {"x": "x"}, {"y": "a"}),
    step("add_ten", {"x": "x"}, {"y": "b"}),
    step("add_sub", {"INPUT0": "a", "INPUT1": "b"}, {"OUTPUT0": "sum", "OUTPUT1": "diff"}),
])  # fmt: skip
BAD_PLANS = {
    "unknown_model": (
        step("nope", {"x": "x"}, {"y": "sum"}),
        "step 1 (model 'nope'): unknown model 'nope'",
    ),
    "unknown_input": (
        step("add_two", {"z": "x"}, {"y": "sum"}),
        "step 1 (model 'add_two'): input_map names 'z', which the model does not take",
    ),
    "nothing_makes_it": (
        step("add_two", {"x": "q"}, {"y": "sum"}),
        "step 1 (model 'add_two') reads 'q', which no step and no ensemble input makes",
    ),
    "made_twice": (
        step("add_two", {"x": "x"}, {"y": "sum"}) + step("add_ten", {"x": "x"}, {"y": "sum"}),
        "step 2 (model 'add_ten') makes 'sum', which step 1 (model 'add_two') already make",
    ),
    "cycle": (
        step("add_two", {"x": "b"}, {"y": "a"})
        + step("add_ten", {"x": "a"}, {"y": "b"})
        + step("add_sub", {"INPUT0": "a", "INPUT1": "x"}, {"OUTPUT0": "sum", "OUTPUT1": "diff"}),
        "in a cycle: step 1 (model 'add_two'), step 2 (model 'add_ten')",
    ),
    "no_diff": (
        step("add_two", {"x": "x"}, {"y": "sum"}),
        "output 'diff': no step makes it",
    ),
}


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    repo = tmp_path / "models"
    write_model(repo, "add_two", add_constant(2.0), ADD_CONFIG)
    write_model(repo, "add_ten", add_constant(10.0), ADD_CONFIG)
    write_model(repo, "add_sub", add_sub(4), ADD_SUB_CONFIG)
    (repo / "chain" / "1").mkdir(parents=True)
    (repo / "chain" / "config.pbtxt").write_text(ensemble_config(CHAIN))
    return repo


def _call(client: triton.InferenceServerClient, x: np.ndarray) -> dict[str, np.ndarray]:
    given = triton.InferInput("x", list(x.shape), "FP32")
    given.set_data_from_numpy(x)
    answer = client.infer("chain", [given])
    return {name: answer.as_numpy(name) for name in ("sum", "diff")}


def test_the_chain_answers_as_its_steps_would(repository: Path, tmp_path: Path) -> None:
    http_port = free_port()
    with run_server(repository, tmp_path, "--http-port", str(http_port)) as server:
        client = triton.InferenceServerClient(server.url)
        x = np.arange(12, dtype=np.float32).reshape(3, 4)
        got = _call(client, x)
        np.testing.assert_allclose(got["sum"], (x + 2) + (x + 10))
        np.testing.assert_allclose(got["diff"], np.full((3, 4), -8.0))
        rest = tritonhttp.InferenceServerClient(f"127.0.0.1:{http_port}")
        given = tritonhttp.InferInput("x", [1, 4], "FP32")
        given.set_data_from_numpy(x[:1])
        answer = rest.infer("chain", [given])
        np.testing.assert_allclose(answer.as_numpy("sum"), 2 * x[:1] + 12)
        metadata = client.get_model_metadata("chain")
        assert metadata.platform == "ensemble"
        assert [t.name for t in metadata.inputs] == ["x"]
        assert [t.name for t in metadata.outputs] == ["sum", "diff"]
        assert client.is_model_ready("chain")
        # Many callers at once: every step batches their calls in its own model's batcher.
        rng = np.random.default_rng(0)
        inputs = [rng.normal(size=(1, 4)).astype(np.float32) for _ in range(96)]
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda v: _call(client, v), inputs))
        for v, answer in zip(inputs, answers, strict=True):
            np.testing.assert_allclose(answer["sum"], 2 * v + 12, rtol=1e-6)
        for name in ("add_two", "add_ten", "add_sub"):
            stats = client.get_inference_statistics(name).model_stats[0]
            assert stats.inference_count == 100, (name, stats.inference_count)
            assert stats.execution_count < stats.inference_count, name  # batched
        chain = client.get_inference_statistics("chain").model_stats[0]
        assert chain.inference_stats.success.count == 98


def test_bad_plans_are_refused_at_load_naming_the_step(repository: Path, tmp_path: Path) -> None:
    for name, (steps, _) in BAD_PLANS.items():
        (repository / name / "1").mkdir(parents=True)
        (repository / name / "config.pbtxt").write_text(ensemble_config(steps))
    write_model(repository, "accumulate", accumulator(), accumulator_config())
    (repository / "stateful" / "1").mkdir(parents=True)
    stateful = step("accumulate", {"INPUT": "x"}, {"OUTPUT": "sum"})
    (repository / "stateful" / "config.pbtxt").write_text(ensemble_config(stateful))
    (repository / "wrong_type" / "1").mkdir(parents=True)
    (repository / "wrong_type" / "config.pbtxt").write_text(ensemble_config(CHAIN, "TYPE_INT32"))
    with run_server(repository, tmp_path, wait_ready=False) as server:
        client = triton.InferenceServerClient(server.url)
        for _ in range(400):  # until every ensemble's load has ended, ready or with a reason
            index = {m.name: m for m in client.get_model_repository_index().models}
            if all(m.state == "READY" or m.reason for m in index.values()):
                break
            time.sleep(0.05)
        assert not client.is_server_ready()  # strict readiness: models failed to load
        for name, (_, message) in BAD_PLANS.items():
            assert index[name].state == "UNAVAILABLE", name
            assert message in index[name].reason, (name, index[name].reason)
        assert "output 'sum' is declared INT32, but step 3 (model 'add_sub') makes FP32" in (
            index["wrong_type"].reason
        )
        assert "step 1 (model 'accumulate'): a text generator or a sequence model cannot" in (
            index["stateful"].reason
        )
        assert client.is_model_ready("chain")  # the good one beside them serves
        assert _call(client, np.zeros((1, 4), np.float32))["diff"].tolist() == [[-8.0] * 4]


def test_an_unloaded_step_makes_the_ensemble_unready(repository: Path, tmp_path: Path) -> None:
    with run_server(repository, tmp_path, "--model-control-mode", "explicit") as server:
        client = triton.InferenceServerClient(server.url)
        for name in ("add_two", "add_ten", "add_sub", "chain"):
            client.load_model(name)
        assert client.is_model_ready("chain")
        client.unload_model("add_ten")
        assert not client.is_model_ready("chain")
        index = {m.name: m for m in client.get_model_repository_index().models}
        assert index["chain"].state == "UNAVAILABLE"
        assert index["chain"].reason.startswith("step 2 (model 'add_ten'): model 'add_ten'")
        with pytest.raises(InferenceServerException) as refused:
            _call(client, np.zeros((1, 4), np.float32))
        assert refused.value.status() == "StatusCode.UNAVAILABLE"
        assert "ensemble 'chain' step 2 (model 'add_ten'): model 'add_ten' is not ready" in (
            refused.value.message()
        )
        client.load_model("add_ten")
        assert client.is_model_ready("chain")
        assert _call(client, np.ones((2, 4), np.float32))["sum"].tolist() == [[14.0] * 4] * 2
        # Bad input to the ensemble is checked against its own declared inputs.
        wrong = triton.InferInput("x", [1, 3], "FP32")
        wrong.set_data_from_numpy(np.zeros((1, 3), np.float32))
        with pytest.raises(InferenceServerException) as bad:
            client.infer("chain", [wrong])
        assert bad.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert "expected shape [-1, 4], got [1, 3]" in bad.value.message()


@st.composite
def chain_requests(draw: st.DrawFn) -> pb.ModelInferRequest:
    """Calls of the chain with any shapes, datatypes, lengths and floats."""
    request = pb.ModelInferRequest(model_name="chain")
    rows = draw(st.sampled_from([0, 1, 2, 8, 9]))
    width = draw(st.sampled_from([4, 4, 4, 3, 0]))
    datatype = draw(st.sampled_from(["FP32", "FP32", "FP32", "FP16", "INT32", "BYTES"]))
    name = draw(st.sampled_from(["x", "x", "x", "y", ""]))
    request.inputs.add(name=name, datatype=datatype, shape=[rows, width])
    values = draw(st.lists(st.floats(width=32), min_size=rows * width, max_size=rows * width))
    data = np.array(values, np.float32).tobytes()
    if draw(st.integers(0, 5)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    request.raw_input_contents.append(data)
    if draw(st.booleans()):
        request.outputs.add(name=draw(st.sampled_from(["sum", "diff", "a", "OUTPUT0"])))
    return request


@pytest.mark.parametrize("examples", EXAMPLES)
def test_the_chain_never_fails_inside(repository: Path, tmp_path: Path, examples: int) -> None:
    codes: Counter = Counter()
    with run_server(repository, tmp_path) as server, grpc.insecure_channel(server.url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        run_property(examples, chain_requests(), lambda r: call_checked(stub.ModelInfer, r, codes))
        print(f"ensemble fuzz, {sum(codes.values())} requests: {dict(codes.most_common())}")
        assert codes["OK"] and codes["INVALID_ARGUMENT"]
        client = triton.InferenceServerClient(server.url)
        assert _call(client, np.zeros((1, 4), np.float32))["sum"].tolist() == [[12.0] * 4]
