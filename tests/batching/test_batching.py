"""The dynamic batcher under concurrency: every answer is its own, ordering, back-pressure,
timeouts, deadlines and priorities. One server runs every variant as its own model."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from ..onnx_models import ADD_SUB_CONFIG, _model, add_sub, slow_matmul, write_model
from ..server_process import RunningServer, run_server

SLOW_ITEMS = 256  # one full batch of the slow model: about 80 ms on one thread
# Time for a request sent first to reach the server and start running before the next is sent.
BUSY_SETTLE_S = 0.01


def _slow_config(extra: str, instances: int = 1) -> str:
    return f"""
max_batch_size: {SLOW_ITEMS}
instance_group [ {{ count: {instances} kind: KIND_CPU }} ]
parameters {{ key: "intra_op_thread_count" value {{ string_value: "1" }} }}
{extra}
"""


def _variable_negate() -> bytes:
    from onnx import TensorProto, helper

    return _model(
        [helper.make_node("Neg", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.INT32, ["n", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, ["n", "w"])],
    )


def _batching_repository(root: Path) -> Path:
    repo = root / "models"
    batched = ADD_SUB_CONFIG.replace('name: "add_sub"', "").replace(
        "max_batch_size: 8", "max_batch_size: 64"
    )
    write_model(
        repo,
        "adder",
        add_sub(),
        batched + "dynamic_batching { max_queue_delay_microseconds: 2000 }",
    )
    write_model(
        repo,
        "adder_ordered",
        add_sub(),
        batched + "dynamic_batching { max_queue_delay_microseconds: 2000 preserve_ordering: true }",
    )
    write_model(repo, "adder_plain", add_sub(), batched)  # no dynamic_batching
    write_model(  # the GPU's path: host buffers gathered in place, reused, IOBinding
        repo,
        "adder_bound",
        add_sub(),
        batched
        + "dynamic_batching { max_queue_delay_microseconds: 2000 }\n"
        + 'parameters { key: "io_binding" value { string_value: "1" } }\n'
        + 'parameters { key: "pinned_buffers" value { string_value: "1" } }',
    )
    write_model(
        repo,
        "ragged",
        _variable_negate(),
        "max_batch_size: 16\ndynamic_batching { max_queue_delay_microseconds: 5000 }",
    )
    slow = slow_matmul()
    variants = {
        "slow_small_queue": _slow_config(
            "dynamic_batching { default_queue_policy { max_queue_size: 2 } }"
        ),
        "slow_timeout": _slow_config(
            "dynamic_batching { default_queue_policy { default_timeout_microseconds: 5000 } }"
        ),
        "slow_timeout_delay": _slow_config(
            "dynamic_batching { default_queue_policy {"
            " default_timeout_microseconds: 5000 timeout_action: DELAY } }"
        ),
        "slow_override": _slow_config(
            "dynamic_batching { default_queue_policy { allow_timeout_override: true } }"
        ),
        "slow_deadline": _slow_config("dynamic_batching { }"),
        "slow_priority": _slow_config(
            "dynamic_batching { priority_levels: 2 default_priority_level: 2 }"
        ),
        "slow_unordered": _slow_config("dynamic_batching { }", instances=2),
        "slow_ordered": _slow_config("dynamic_batching { preserve_ordering: true }", instances=2),
    }
    # Four times the work: the busy request must still run when the last of the priority
    # test's requests arrives, and the big one of the ordering test when the small one
    # reaches the server (through a front end process in a split server), however loaded the
    # machine is.
    slower = slow_matmul(depth=256)
    slowest_first = {"slow_priority", "slow_unordered", "slow_ordered"}
    for name, config in variants.items():
        write_model(repo, name, slower if name in slowest_first else slow, config)
    return repo


@pytest.fixture(scope="module")
def batching_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("batching")
    with run_server(_batching_repository(root), root) as server:
        yield server


def _request(model: str, tensors: dict[str, np.ndarray], **params: int) -> pb.ModelInferRequest:
    datatypes = {np.dtype(np.float32): "FP32", np.dtype(np.int32): "INT32"}
    request = pb.ModelInferRequest(model_name=model)
    for name, array in tensors.items():
        request.inputs.add(name=name, datatype=datatypes[array.dtype], shape=list(array.shape))
        request.raw_input_contents.append(array.tobytes())
    for key, value in params.items():
        request.parameters[key].int64_param = value
    return request


def _output(response: pb.ModelInferResponse, index: int, dtype, shape) -> np.ndarray:
    return np.frombuffer(response.raw_output_contents[index], dtype).reshape(shape)


async def _stats(stub, model: str) -> pb.ModelStatistics:
    response = await stub.ModelStatistics(pb.ModelStatisticsRequest(name=model))
    return response.model_stats[0]


def _run(server: RunningServer, scenario) -> object:
    async def main():
        async with grpc.aio.insecure_channel(server.url) as channel:
            # Connect first: otherwise requests queued behind the handshake may reach the server
            # in any order, and the scenarios below depend on which arrives first.
            await channel.channel_ready()
            return await scenario(pb_grpc.GRPCInferenceServiceStub(channel))

    return asyncio.run(main())


@pytest.mark.parametrize("model", ["adder", "adder_ordered", "adder_bound"])
def test_hundreds_in_flight_each_get_their_own_answer(batching_server, model: str) -> None:
    rng = np.random.default_rng(5)
    cases = []
    for i in range(400):
        items = int(rng.choice([1, 1, 2, 3, 5]))
        a = rng.standard_normal((items, 16), dtype=np.float32) + i
        b = rng.standard_normal((items, 16), dtype=np.float32)
        cases.append((a, b))

    async def scenario(stub):
        before = await _stats(stub, model)
        responses = await asyncio.gather(
            *(stub.ModelInfer(_request(model, {"INPUT0": a, "INPUT1": b})) for a, b in cases)
        )
        return before, responses, await _stats(stub, model)

    before, responses, after = _run(batching_server, scenario)
    if model == "adder_bound":
        assert "'adder_bound' version 1: dynamic batching up to 64, 2 instance(s): IOBinding" in (
            batching_server.log()
        )
    for (a, b), response in zip(cases, responses, strict=True):
        np.testing.assert_array_equal(_output(response, 0, np.float32, a.shape), a + b)
        np.testing.assert_array_equal(_output(response, 1, np.float32, a.shape), a - b)
    items = sum(len(a) for a, _ in cases)
    executions = after.execution_count - before.execution_count
    assert after.inference_count - before.inference_count == items
    assert executions < len(cases) / 2, f"{executions} executions for {len(cases)} requests"
    assert sum(b.compute_infer.count for b in after.batch_stats) == after.execution_count
    assert any(b.batch_size > 3 for b in after.batch_stats)


def test_without_dynamic_batching_each_request_runs_alone(batching_server) -> None:
    a = np.ones((2, 16), np.float32)

    async def scenario(stub):
        before = await _stats(stub, "adder_plain")
        await asyncio.gather(
            *(
                stub.ModelInfer(_request("adder_plain", {"INPUT0": a * i, "INPUT1": a}))
                for i in range(50)
            )
        )
        return before, await _stats(stub, "adder_plain")

    before, after = _run(batching_server, scenario)
    assert after.execution_count - before.execution_count == 50
    assert after.inference_count - before.inference_count == 100


def test_different_non_batch_shapes_never_merge(batching_server) -> None:
    rng = np.random.default_rng(9)
    inputs = [rng.integers(-100, 100, (1, int(w)), dtype=np.int32) for w in rng.integers(1, 6, 120)]

    async def scenario(stub):
        return await asyncio.gather(
            *(stub.ModelInfer(_request("ragged", {"x": x})) for x in inputs)
        )

    for x, response in zip(inputs, _run(batching_server, scenario), strict=True):
        np.testing.assert_array_equal(_output(response, 0, np.int32, x.shape), -x)


def _slow_input(value: float, items: int = SLOW_ITEMS) -> dict[str, np.ndarray]:
    return {"x": np.full((items, 512), value, np.float32)}


async def _timed(stub, request, order: list[str], label: str, **kwargs):
    try:
        response = await stub.ModelInfer(request, **kwargs)
    except grpc.aio.AioRpcError as error:
        order.append(label)
        return error
    order.append(label)
    return response


def test_full_queue_answers_resource_exhausted(batching_server) -> None:
    async def scenario(stub):
        order: list[str] = []
        tasks = [
            asyncio.create_task(
                _timed(stub, _request("slow_small_queue", _slow_input(i)), order, str(i))
            )
            for i in range(8)
        ]
        return await asyncio.gather(*tasks)

    results = _run(batching_server, scenario)
    rejected = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    served = [r for r in results if not isinstance(r, grpc.aio.AioRpcError)]
    assert rejected and len(served) >= 2
    for error in rejected:
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "slow_small_queue" in error.details() and "max_queue_size 2" in error.details()


def test_queue_timeout_rejects_without_computing(batching_server) -> None:
    async def scenario(stub):
        before = await _stats(stub, "slow_timeout")
        order: list[str] = []
        busy = asyncio.create_task(
            _timed(stub, _request("slow_timeout", _slow_input(1)), order, "busy")
        )
        await asyncio.sleep(BUSY_SETTLE_S)
        late = await _timed(stub, _request("slow_timeout", _slow_input(2)), order, "late")
        await busy
        return before, late, await _stats(stub, "slow_timeout")

    before, late, after = _run(batching_server, scenario)
    assert isinstance(late, grpc.aio.AioRpcError)
    assert late.code() == grpc.StatusCode.UNAVAILABLE and "timed out" in late.details()
    assert after.inference_count - before.inference_count == SLOW_ITEMS  # only the first ran


def test_queue_timeout_with_delay_action_still_computes(batching_server) -> None:
    async def scenario(stub):
        order: list[str] = []
        busy = asyncio.create_task(
            _timed(stub, _request("slow_timeout_delay", _slow_input(1)), order, "a")
        )
        await asyncio.sleep(BUSY_SETTLE_S)
        late = await _timed(stub, _request("slow_timeout_delay", _slow_input(2)), order, "b")
        await busy
        return late

    late = _run(batching_server, scenario)
    assert not isinstance(late, grpc.aio.AioRpcError), late


def test_request_timeout_parameter_overrides_when_allowed(batching_server) -> None:
    async def scenario(stub):
        order: list[str] = []
        busy = asyncio.create_task(
            _timed(stub, _request("slow_override", _slow_input(1)), order, "a")
        )
        await asyncio.sleep(BUSY_SETTLE_S)
        short = asyncio.create_task(
            _timed(stub, _request("slow_override", _slow_input(2), timeout=3000), order, "short")
        )
        patient = asyncio.create_task(
            _timed(stub, _request("slow_override", _slow_input(3)), order, "patient")
        )
        return await asyncio.gather(busy, short, patient)

    _, short, patient = _run(batching_server, scenario)
    assert isinstance(short, grpc.aio.AioRpcError) and short.code() == grpc.StatusCode.UNAVAILABLE
    assert not isinstance(patient, grpc.aio.AioRpcError)


def test_grpc_deadline_while_queued_is_never_computed(batching_server) -> None:
    async def scenario(stub):
        before = await _stats(stub, "slow_deadline")
        order: list[str] = []
        busy = asyncio.create_task(
            _timed(stub, _request("slow_deadline", _slow_input(1)), order, "a")
        )
        await asyncio.sleep(BUSY_SETTLE_S)
        late = await _timed(
            stub, _request("slow_deadline", _slow_input(2)), order, "late", timeout=0.005
        )
        await busy
        await asyncio.sleep(0.2)  # time enough for the server to have run it, had it kept it
        return before, late, await _stats(stub, "slow_deadline")

    before, late, after = _run(batching_server, scenario)
    assert isinstance(late, grpc.aio.AioRpcError)
    assert late.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert after.inference_count - before.inference_count == SLOW_ITEMS


def test_higher_priority_overtakes_the_queue(batching_server) -> None:
    async def scenario(stub):
        order: list[str] = []
        tasks = [
            asyncio.create_task(
                _timed(stub, _request("slow_priority", _slow_input(0)), order, "busy")
            )
        ]
        await asyncio.sleep(BUSY_SETTLE_S)
        for i in range(3):
            tasks.append(
                asyncio.create_task(
                    _timed(
                        stub,
                        _request("slow_priority", _slow_input(i), priority=2),
                        order,
                        f"low{i}",
                    )
                )
            )
        await asyncio.sleep(BUSY_SETTLE_S)
        tasks.append(
            asyncio.create_task(
                _timed(stub, _request("slow_priority", _slow_input(9), priority=1), order, "high")
            )
        )
        bad = await _timed(
            stub, _request("slow_priority", _slow_input(1, 1), priority=3), order, "bad"
        )
        await asyncio.gather(*tasks)
        return order, bad

    order, bad = _run(batching_server, scenario)
    assert isinstance(bad, grpc.aio.AioRpcError) and bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "priority 3" in bad.details()
    completions = [label for label in order if label != "bad"]
    assert completions.index("high") < min(completions.index(f"low{i}") for i in range(3)), order


@pytest.mark.parametrize(
    ("model", "big_first"), [("slow_unordered", False), ("slow_ordered", True)]
)
def test_preserve_ordering(batching_server, model: str, big_first: bool) -> None:
    async def scenario(stub):
        order: list[str] = []
        big = asyncio.create_task(_timed(stub, _request(model, _slow_input(1)), order, "big"))
        await asyncio.sleep(10 * BUSY_SETTLE_S)  # big must be running first: ~320 ms
        small = asyncio.create_task(
            _timed(stub, _request(model, _slow_input(2, 1)), order, "small")
        )
        await asyncio.gather(big, small)
        return order

    started = time.perf_counter()
    order = _run(batching_server, scenario)
    assert order == (["big", "small"] if big_first else ["small", "big"]), (
        order,
        time.perf_counter() - started,
    )


def test_sdk_maps_a_full_queue_to_server_busy(batching_server) -> None:
    """With retries off the SDK raises ServerBusyError; with retries it waits and gets through."""
    from concurrent.futures import ThreadPoolExecutor

    import deepserve

    x = _slow_input(1)["x"]

    def call(retries: int):
        client = deepserve.Client(batching_server.url, retries=retries, timeout=60)
        try:
            return client.infer("slow_small_queue", {"x": x})
        except deepserve.DeepserveError as error:
            return error

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(call, [0] * 8))
    busy = [o for o in outcomes if isinstance(o, deepserve.ServerBusyError)]
    assert busy and "max_queue_size 2" in busy[0].message
    with ThreadPoolExecutor(4) as pool:
        retried = list(pool.map(call, [6] * 4))
    assert all(isinstance(o, dict) for o in retried), retried
