"""The sequence batcher end to end with tritonclient's own sequence calls (gRPC and HTTP): a
stateful accumulator whose state the server keeps between a sequence's requests, control
inputs filled per row, slots, the backlog, the idle timeout, and the errors users meet."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
import tritonclient.http as triton_http
from hypothesis import strategies as st
from onnx import TensorProto
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc
from tritonclient.utils import InferenceServerException

from ..core.test_decode_bombs import _processes, _tree
from ..core.test_limits import rss_mb
from ..onnx_models import accumulator, accumulator_config, write_model
from ..server_process import RunningServer, free_port, run_server
from .test_fuzz import CI_EXAMPLES, run_property

IDLE_US = 400_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("sequences")
    models = folder / "models"
    write_model(models, "accumulate", accumulator(), accumulator_config(max_batch_size=8))
    write_model(
        models,
        "accumulate_named",
        accumulator(TensorProto.STRING),
        accumulator_config(strategy="oldest { max_candidate_sequences: 8 }", corrid="TYPE_STRING"),
    )
    # Two slots (max_batch_size 2, one instance) and a short idle timeout.
    write_model(
        models, "two_slots", accumulator(), accumulator_config(max_batch_size=2, idle_us=IDLE_US)
    )
    http_port = free_port()
    # A backlog of one new sequence waiting for a slot.
    with run_server(
        models, folder, "--http-port", str(http_port), "--max-queue-size", "1"
    ) as running:
        running.http_port = http_port
        yield running


def _value(value: float, module=triton) -> list:
    tensor = module.InferInput("INPUT", [1, 1], "FP32")
    tensor.set_data_from_numpy(np.array([[value]], np.float32))
    return [tensor]


def _step(client, model: str, sequence_id, value: float, start=False, end=False) -> dict:
    module = triton_http if isinstance(client, triton_http.InferenceServerClient) else triton
    result = client.infer(
        model,
        _value(value, module),
        sequence_id=sequence_id,
        sequence_start=start,
        sequence_end=end,
    )
    return {
        "sum": float(result.as_numpy("OUTPUT")[0, 0]),
        "corrid": int(result.as_numpy("CORRID_OUT")[0, 0]),
        "ready": int(result.as_numpy("READY_OUT")[0, 0]),
        "end": int(result.as_numpy("END_OUT")[0, 0]),
    }


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_interleaved_sequences_each_keep_their_own_state(server: RunningServer, transport):
    client = (
        triton.InferenceServerClient(server.url)
        if transport == "grpc"
        else triton_http.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    )
    first, second = (1001, 1002) if transport == "grpc" else (2001, 2002)
    assert _step(client, "accumulate", first, 1, start=True)["sum"] == 1
    assert _step(client, "accumulate", second, 100, start=True)["sum"] == 100
    step = _step(client, "accumulate", first, 2)
    assert step == {"sum": 3, "corrid": first, "ready": 1, "end": 0}
    assert _step(client, "accumulate", second, 10)["sum"] == 110
    last = _step(client, "accumulate", first, 4, end=True)
    assert last == {"sum": 7, "corrid": first, "ready": 1, "end": 1}
    assert _step(client, "accumulate", second, 1, end=True)["sum"] == 111
    # Ended: the id is free, and its state gone.
    with pytest.raises(InferenceServerException, match=f"sequence {first} is not active"):
        _step(client, "accumulate", first, 1)
    assert _step(client, "accumulate", first, 5, start=True, end=True)["sum"] == 5
    client.close()


def test_string_sequence_ids_and_a_start_again_restarts(server: RunningServer):
    """A string CORRID gets the id as sent (the oldest strategy, this time)."""
    client = triton.InferenceServerClient(server.url)
    model = "accumulate_named"
    result = client.infer(model, _value(3), sequence_id="walk-1", sequence_start=True)
    assert result.as_numpy("OUTPUT")[0, 0] == 3
    assert result.as_numpy("CORRID_OUT")[0, 0] == b"walk-1"
    result = client.infer(model, _value(4), sequence_id="walk-1")
    assert result.as_numpy("OUTPUT")[0, 0] == 7
    result = client.infer(model, _value(1), sequence_id="walk-1", sequence_start=True)
    assert result.as_numpy("OUTPUT")[0, 0] == 1  # START again: the state starts from zeros
    client.infer(model, _value(0), sequence_id="walk-1", sequence_end=True)
    # An integer CORRID cannot carry a string id.
    with pytest.raises(InferenceServerException, match="its sequence ids must be integers"):
        client.infer("accumulate", _value(1), sequence_id="walk-2", sequence_start=True)
    client.close()


def test_the_errors_users_meet_are_clear(server: RunningServer):
    client = triton.InferenceServerClient(server.url)
    cases = [
        ({}, "needs a sequence_id"),
        ({"sequence_id": 77}, "sequence 77 is not active in model 'accumulate'"),
        ({"sequence_id": 77}, "max_sequence_idle_microseconds"),
        ({"sequence_id": "nobody"}, "sequence 'nobody' is not active"),
    ]
    for parameters, words in cases:
        model = (
            "accumulate_named" if isinstance(parameters.get("sequence_id"), str) else "accumulate"
        )
        with pytest.raises(InferenceServerException, match=words) as refused:
            client.infer(model, _value(1), **parameters)
        assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    two = triton.InferInput("INPUT", [2, 1], "FP32")
    two.set_data_from_numpy(np.ones((2, 1), np.float32))
    with pytest.raises(InferenceServerException, match="batch size 1"):
        client.infer("accumulate", [two], sequence_id=5, sequence_start=True)
    client.close()


def test_an_idle_sequence_is_released_and_its_request_after_says_why(server: RunningServer):
    client = triton.InferenceServerClient(server.url)
    assert _step(client, "two_slots", 31, 2, start=True)["sum"] == 2
    time.sleep(3 * IDLE_US / 1e6)
    with pytest.raises(InferenceServerException, match=f"({IDLE_US} us)") as refused:
        _step(client, "two_slots", 31, 1)
    assert "sequence 31 is not active" in refused.value.message()
    assert _step(client, "two_slots", 31, 6, start=True, end=True)["sum"] == 6
    client.close()


def test_past_the_slots_a_new_sequence_waits_then_the_backlog_is_refused(server: RunningServer):
    """Two slots: a third sequence waits for one (the backlog holds one), a fourth is refused
    with RESOURCE_EXHAUSTED, and the waiting one runs as soon as a sequence ends."""
    client = triton.InferenceServerClient(server.url)
    _step(client, "two_slots", 41, 1, start=True)
    _step(client, "two_slots", 42, 1, start=True)
    answers: dict[str, float] = {}
    waiting = threading.Thread(
        target=lambda: answers.update(third=_step(client, "two_slots", 43, 9, start=True)["sum"])
    )
    waiting.start()
    time.sleep(0.3)
    assert not answers  # no slot yet
    with pytest.raises(InferenceServerException, match="all 2 sequence slots are in use") as busy:
        _step(client, "two_slots", 44, 1, start=True)
    assert busy.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    _step(client, "two_slots", 41, 1, end=True)  # a slot frees
    waiting.join(10)
    assert answers == {"third": 9}
    _step(client, "two_slots", 42, 1, end=True)
    _step(client, "two_slots", 43, 1, end=True)
    client.close()


def test_a_sequence_missing_its_end_frees_its_slot_at_the_idle_timeout(server: RunningServer):
    client = triton.InferenceServerClient(server.url)
    _step(client, "two_slots", 51, 1, start=True)  # never ended
    _step(client, "two_slots", 52, 1, start=True)  # never ended
    started = time.monotonic()
    assert _step(client, "two_slots", 53, 5, start=True)["sum"] == 5  # waits for the timeout
    assert time.monotonic() - started >= 0.8 * IDLE_US / 1e6
    _step(client, "two_slots", 53, 0, end=True)
    client.close()


def test_ready_sequences_share_batches(server: RunningServer):
    """Eight sequences stepping at once (asyncio client): each one's sums are its own, and
    the model ran fewer times than it answered."""

    async def walk(client: triton_aio.InferenceServerClient, sequence_id: int) -> list[float]:
        sums = []
        for step in range(6):
            result = await client.infer(
                "accumulate",
                _value(sequence_id),
                sequence_id=sequence_id,
                sequence_start=step == 0,
                sequence_end=step == 5,
            )
            sums.append(float(result.as_numpy("OUTPUT")[0, 0]))
        return sums

    async def main() -> list[list[float]]:
        client = triton_aio.InferenceServerClient(server.url)
        try:
            return await asyncio.gather(*(walk(client, 900 + i) for i in range(8)))
        finally:
            await client.close()

    before = _counts(server)
    walks = asyncio.run(main())
    for index, sums in enumerate(walks):
        value = 900 + index
        assert sums == [value * (k + 1) for k in range(6)]
    inferences, executions = (a - b for a, b in zip(_counts(server), before, strict=True))
    assert inferences == 48
    assert executions < inferences


def _counts(server: RunningServer) -> tuple[int, int]:
    client = triton.InferenceServerClient(server.url)
    stats = client.get_inference_statistics("accumulate").model_stats[0]
    client.close()
    return stats.inference_count, stats.execution_count


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (('name: "READY"', 'name: "IS_READY"'), "control input 'IS_READY' is not a tensor"),
        (
            ("TYPE_FP32 dims: [ 1 ] } ]\n}", "TYPE_FP32 dims: [ 2 ] } ]\n}"),
            "state input 'ACC_IN': the config's dims [2] do not fit the model's [1]",
        ),
    ],
)
def test_a_model_whose_sequence_config_does_not_fit_its_graph_is_refused(
    tmp_path: Path, change: tuple[str, str], words: str
):
    models = tmp_path / "models"
    config = accumulator_config().replace(*change)
    assert config != accumulator_config()
    write_model(models, "broken", accumulator(), config)
    with run_server(models, tmp_path, wait_ready=False) as running:
        client = triton.InferenceServerClient(running.url)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            index = client.get_model_repository_index().models
            if index and index[0].state == "UNAVAILABLE":
                break
            time.sleep(0.2)
        assert words in index[0].reason, index[0].reason
        client.close()


# ---- fuzzed sequence controls, checked against a model of the expected sums -------------------

POOL = (1, 2, 3)
"""Sequence ids the fuzz walks (on 'accumulate': no other test uses them)."""

steps = st.lists(
    st.tuples(
        st.sampled_from(
            [("uint64", i) for i in POOL] * 4
            + [("uint64", 0), ("int64", -1), ("string", "s1"), ("double", 1.0)]
        ),
        st.booleans(),  # start
        st.booleans(),  # end
        st.integers(-5, 5),  # value
        st.sampled_from([None] * 8 + ["start_as_int", "end_as_string"]),  # a flag's wrong type
    ),
    min_size=1,
    max_size=25,
)


def _raw_step(stub, id_kind: str, sequence_id, start: bool, end: bool, value: int, flaw):
    request = pb.ModelInferRequest(model_name="accumulate")
    tensor = request.inputs.add(name="INPUT", datatype="FP32", shape=[1, 1])
    tensor.contents.fp32_contents.append(value)
    field = {"uint64": "uint64_param", "int64": "int64_param", "string": "string_param"}
    setattr(request.parameters["sequence_id"], field.get(id_kind, "double_param"), sequence_id)
    if start or flaw == "start_as_int":
        if flaw == "start_as_int":
            request.parameters["sequence_start"].int64_param = 1
        else:
            request.parameters["sequence_start"].bool_param = True
    if end or flaw == "end_as_string":
        if flaw == "end_as_string":
            request.parameters["sequence_end"].string_param = "true"
        else:
            request.parameters["sequence_end"].bool_param = True
    return stub.ModelInfer(request, timeout=30)


def test_fuzzed_sequence_controls_never_fail_inside_nor_mix_states(server: RunningServer):
    channel = grpc.insecure_channel(server.url)
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    codes: Counter = Counter()

    def check(walk) -> None:
        for sequence_id in POOL:  # a clean start: every pool sequence ended
            _raw_step(stub, "uint64", sequence_id, True, True, 0, None)
        sums: dict[int, float] = {}
        for (id_kind, sequence_id), start, end, value, flaw in walk:
            valid = id_kind == "uint64" and sequence_id != 0 and flaw is None
            try:
                answer = _raw_step(stub, id_kind, sequence_id, start, end, value, flaw)
            except grpc.RpcError as error:
                codes[error.code().name] += 1
                assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
                assert not valid or (not start and sequence_id not in sums), error.details()
                continue
            codes["OK"] += 1
            assert valid and (start or sequence_id in sums)
            sums[sequence_id] = (0 if start else sums[sequence_id]) + value
            names = [o.name for o in answer.outputs]
            outputs = dict(zip(names, answer.raw_output_contents, strict=True))
            assert np.frombuffer(outputs["OUTPUT"], np.float32)[0] == sums[sequence_id]
            assert np.frombuffer(outputs["CORRID_OUT"], np.uint64)[0] == sequence_id
            if end:
                del sums[sequence_id]

    run_property(CI_EXAMPLES // 2, steps, check)
    print(f"sequence fuzz: {dict(codes.most_common())}")
    channel.close()


def test_an_unload_ends_open_sequences_and_a_reload_does_not_revive_them(tmp_path: Path):
    models = tmp_path / "models"
    write_model(models, "accumulate", accumulator(), accumulator_config())
    with run_server(models, tmp_path, "--model-control-mode", "explicit") as running:
        client = triton.InferenceServerClient(running.url)
        client.load_model("accumulate")
        assert _step(client, "accumulate", 5, 2, start=True)["sum"] == 2
        assert _step(client, "accumulate", 5, 3)["sum"] == 5
        client.unload_model("accumulate")
        client.load_model("accumulate")
        with pytest.raises(InferenceServerException, match="unloaded or replaced") as ended:
            _step(client, "accumulate", 5, 1)
        assert "sequence 5 is not active" in ended.value.message()
        assert _step(client, "accumulate", 5, 1, start=True, end=True)["sum"] == 1  # anew
        client.close()


def _tree_rss_mb(pid: int) -> float:
    """The server's memory, front ends and engine included when it is split."""
    return sum(rss_mb(p) for p in _tree(pid, _processes()))


def test_ten_thousand_abandoned_sequences_leave_no_memory_behind(tmp_path: Path):
    """Sequences started and never ended, by clients that go away: each is released at the
    idle timeout, and the server's memory comes back to where it was."""
    models = tmp_path / "models"
    config = accumulator_config(
        max_batch_size=64, idle_us=300_000, strategy="oldest { max_candidate_sequences: 2500 }"
    )
    write_model(models, "accumulate", accumulator(), config)
    with run_server(models, tmp_path) as running:
        channel = grpc.insecure_channel(running.url)
        stub = pb_grpc.GRPCInferenceServiceStub(channel)

        def abandon(first_id: int, count: int) -> None:
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda i: _raw_step(stub, "uint64", i, True, False, 1, None),
                              range(first_id, first_id + count)))  # fmt: skip
            time.sleep(0.8)  # past the idle timeout: all released

        abandon(1, 2000)  # warm: allocators and caches reach their working size
        baseline = _tree_rss_mb(running.process.pid)
        for wave in range(5):
            abandon(10_000 + wave * 2000, 2000)
        after = _tree_rss_mb(running.process.pid)
        print(
            f"RSS {baseline:.1f} MB after 2,000 abandoned sequences, {after:.1f} after 10,000 more"
        )
        assert after <= baseline * 1.10
        # And they are gone: continuing one says it is not active.
        with pytest.raises(grpc.RpcError, match="is not active"):
            _raw_step(stub, "uint64", 10_001, False, False, 1, None)
        channel.close()


def test_sequences_over_one_stream_keep_their_order_and_state(server: RunningServer):
    """tritonclient's stream (ModelStreamInfer): two sequences' steps sent back to back on
    one stream, without waiting for answers, run in order, each with its own state."""
    answers: list = []
    done = threading.Event()

    def callback(result, error) -> None:
        answers.append(error or result)
        if len(answers) == 12:
            done.set()

    client = triton.InferenceServerClient(server.url)
    client.start_stream(callback=callback)
    for step in range(6):
        for sequence_id, value in ((3001, 1.0), (3002, 10.0)):
            client.async_stream_infer(
                "accumulate",
                _value(value),
                request_id=f"{sequence_id}-{step}",
                sequence_id=sequence_id,
                sequence_start=step == 0,
                sequence_end=step == 5,
            )
    assert done.wait(30)
    client.stop_stream()
    client.close()
    sums: dict[str, list[float]] = {"3001": [], "3002": []}
    for answer in answers:
        assert not isinstance(answer, InferenceServerException), answer
        sequence_id = answer.get_response().id.split("-")[0]
        sums[sequence_id].append(float(answer.as_numpy("OUTPUT")[0, 0]))
    assert sums == {"3001": [1, 2, 3, 4, 5, 6], "3002": [10, 20, 30, 40, 50, 60]}


def test_a_cancelled_stream_leaves_its_sequence_to_the_idle_timeout(server: RunningServer):
    """Steps sent on a stream that is then cancelled: whatever ran, the sequence is released
    at the idle timeout, other sequences are untouched, nothing fails inside."""
    errors: list = []
    client = triton.InferenceServerClient(server.url)
    other = 61
    assert _step(client, "two_slots", other, 5, start=True)["sum"] == 5
    client.start_stream(callback=lambda result, error: errors.append(error))
    for step in range(20):
        client.async_stream_infer("two_slots", _value(1), sequence_id=62, sequence_start=step == 0)
    client.stop_stream(cancel_requests=True)
    assert not [e for e in errors if e is not None and "INTERNAL" in str(e)]
    assert _step(client, "two_slots", other, 1, end=True)["sum"] == 6  # its own state
    time.sleep(3 * IDLE_US / 1e6)
    with pytest.raises(InferenceServerException, match="sequence 62 is not active"):
        _step(client, "two_slots", 62, 1)
    assert _step(client, "two_slots", 63, 2, start=True, end=True)["sum"] == 2
    client.close()
