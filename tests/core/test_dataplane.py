"""The data plane in process, with a scheduler that negates its input: every check a request
passes before it reaches a model, what it answers, and the statistics it keeps."""

from __future__ import annotations

import asyncio

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from deepserve.server.core.dataplane import DataPlane, RequestLimits
from deepserve.server.protocol.errors import InvalidInput, LimitExceeded, ModelNotFound
from deepserve.server.protocol.types import InferRequest, InputTensor, RequestedOutput

from .fakes import FunctionScheduler, OneModel, version


def _config() -> mc.ModelConfig:
    config = mc.ModelConfig(name="negate", max_batch_size=4)
    config.input.add(name="x", data_type=mc.TYPE_INT32, dims=[3])
    config.output.add(name="y", data_type=mc.TYPE_INT32, dims=[3])
    return config


def _plane(limits: RequestLimits | None = None) -> tuple[DataPlane, FunctionScheduler, OneModel]:
    scheduler = FunctionScheduler(lambda feeds: {"y": -feeds["x"]})
    models = OneModel(version(_config(), scheduler, {"y": ["a", "b", "c"]}))
    return DataPlane(models, limits or RequestLimits(1000, 100, 1 << 20)), scheduler, models


def _request(rows: list[list[int]], **fields) -> InferRequest:
    shape = (len(rows), 3)
    values = [v for row in rows for v in row]
    tensor = InputTensor("x", fields.pop("datatype", "INT32"), fields.pop("shape", shape),
                         values=values)  # fmt: skip
    return InferRequest("negate", inputs=[tensor], **fields)


def _infer(plane: DataPlane, request: InferRequest):
    return asyncio.run(plane.infer(request))


def test_an_answer_and_its_statistics() -> None:
    plane, scheduler, models = _plane()
    answer = _infer(plane, _request([[1, 2, 3], [4, 5, 6]], id="r1", parameters={"priority": 2}))
    (output,) = answer.outputs
    assert (answer.model, answer.version, answer.id) == ("negate", "1", "r1")
    assert output.name == "y" and output.datatype == "INT32"
    assert output.array.tolist() == [[-1, -2, -3], [-4, -5, -6]]
    assert scheduler.jobs == [(2, ["y"], 2, 0)]
    stats = models.get("negate").stats.view("negate", "1")
    assert stats.requests["success"][0] == 1 and stats.requests["queue"] == (1, 1_000)
    assert models.get("negate").histograms.requests == 1  # type: ignore[attr-defined]


def test_classification_answers_top_k_strings() -> None:
    plane, _, _ = _plane()
    request = _request([[1, 9, 3]], outputs=[RequestedOutput("y", classification=2)])
    (output,) = _infer(plane, request).outputs
    assert output.datatype == "BYTES"
    assert output.array.tolist() == [["-1.000000:0:a", "-3.000000:2:c"]]


@pytest.mark.parametrize(
    ("request_fields", "error", "message"),
    [
        ({"datatype": "FP32"}, InvalidInput, "input 'x': expected datatype INT32, got FP32"),
        ({"shape": (1, 4)}, InvalidInput, r"input 'x': expected shape \[-1, 3\], got \[1, 4\]"),
        ({"outputs": [RequestedOutput("z")]}, InvalidInput, "unknown output 'z'"),
        ({"parameters": {"priority": -1}}, InvalidInput, "'priority' must be a non-negative"),
        ({"parameters": {"timeout": "soon"}}, InvalidInput, "'timeout' must be a non-negative"),
    ],
)
def test_bad_requests_are_named_before_the_model_runs(request_fields, error, message) -> None:
    plane, scheduler, models = _plane()
    rows = [[1, 2, 3, 4]] if request_fields.get("shape") == (1, 4) else [[1, 2, 3]]
    with pytest.raises(error, match=message):
        _infer(plane, _request(rows, **request_fields))
    assert scheduler.jobs == []
    assert models.get("negate").stats.view("negate", "1").requests["fail"][0] == 1


def test_batches_past_max_batch_size_and_missing_inputs_are_refused() -> None:
    plane, scheduler, _ = _plane()
    with pytest.raises(InvalidInput, match=r"batch size 5 is outside 1..4"):
        _infer(plane, _request([[1, 2, 3]] * 5))
    with pytest.raises(InvalidInput, match=r"needs input\(s\) \['x'\]"):
        _infer(plane, InferRequest("negate"))
    with pytest.raises(ModelNotFound, match="unknown model 'other'"):
        _infer(plane, InferRequest("other"))
    assert scheduler.jobs == []


def test_request_limits_refuse_before_decoding() -> None:
    plane, scheduler, _ = _plane(RequestLimits(max_elements=6, max_bytes_element=8,
                                               max_response_bytes=1 << 20))  # fmt: skip
    _infer(plane, _request([[1, 2, 3], [4, 5, 6]]))
    with pytest.raises(LimitExceeded, match="above this server's limit of 6"):
        _infer(plane, _request([[1, 2, 3]] * 3))
    small = _plane(RequestLimits(1000, 8, max_response_bytes=20))[0]
    with pytest.raises(LimitExceeded, match="would take 24 bytes, more than the response limit"):
        _infer(small, _request([[1, 2, 3], [4, 5, 6]]))
    assert len(scheduler.jobs) == 1


def test_a_failed_run_is_counted_and_passed_on() -> None:
    plane, scheduler, models = _plane()
    scheduler.failure = LimitExceeded("the queue is full")
    with pytest.raises(LimitExceeded, match="the queue is full"):
        _infer(plane, _request([[1, 2, 3]]))
    assert models.get("negate").stats.view("negate", "1").requests["fail"][0] == 1


def test_an_item_whose_intermediate_tensors_would_be_too_large_is_refused_before_the_work() -> None:
    """Each element of x needs 1 MiB of intermediates: an item (a row of 3) needs 3 MiB."""

    def plane(limit_mib: int) -> tuple[DataPlane, FunctionScheduler]:
        scheduler = FunctionScheduler(lambda feeds: {"y": -feeds["x"]})
        model = version(_config(), scheduler)
        model.activation_bytes_per_element = float(1 << 20)
        limits = RequestLimits(1000, 100, 1 << 20, max_item_activation_bytes=limit_mib << 20)
        return DataPlane(OneModel(model), limits), scheduler

    roomy, _ = plane(4)
    (output,) = _infer(roomy, _request([[1, 2, 3], [4, 5, 6]])).outputs
    assert output.array.tolist() == [[-1, -2, -3], [-4, -5, -6]]
    tight, scheduler = plane(2)
    with pytest.raises(LimitExceeded) as refused:
        _infer(tight, _request([[1, 2, 3], [4, 5, 6]]))
    message = str(refused.value)
    assert "about 3 MiB" in message and "2 item(s)" in message and "limit of 2 MiB" in message
    assert "max_item_activation_mb" in message
    assert scheduler.jobs == []  # nothing ran
