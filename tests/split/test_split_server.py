"""The split server (--frontends N): answers stay each request's own across front ends, the
engine's statistics and metrics count every front end's calls, a killed front end is replaced
and its calls fail cleanly, a killed engine takes readiness down at once and comes back."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from ..onnx_models import accumulator, accumulator_config, int_negate, slow_matmul, write_model
from ..server_process import RunningServer, free_port, run_server

SLOW_ITEMS = 1024  # with 2048 MatMuls: seconds of compute, time to kill a process under it
SLOW_CONFIG = f"""
max_batch_size: {SLOW_ITEMS}
dynamic_batching {{ }}
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
parameters {{ key: "intra_op_thread_count" value {{ string_value: "1" }} }}
"""
NEGATE_CONFIG = """
max_batch_size: 64
dynamic_batching { max_queue_delay_microseconds: 2000 }
"""


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    write_model(models, "negate", int_negate(), NEGATE_CONFIG)
    write_model(models, "slow", slow_matmul(depth=2048), SLOW_CONFIG)
    return models


def _all_connected(server: RunningServer, frontends: int) -> None:
    """Until the engine has seen every front end (each listens once it has)."""
    deadline = time.monotonic() + 30
    while len(re.findall(r"front end frontend-\d+-\d+ connected", server.log())) < frontends:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)


def _pids(server: RunningServer) -> tuple[int, list[int]]:
    """The engine's pid and the front ends' (newest last), from the log."""
    log = server.log()
    engines = re.findall(r"engine \(pid (\d+)\) serving", log)
    frontends = re.findall(r"front end frontend-\d+-(\d+) connected", log)
    return int(engines[-1]), [int(pid) for pid in frontends]


def _process_name(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def _negate(stub: pb_grpc.GRPCInferenceServiceStub, values: np.ndarray) -> np.ndarray:
    request = pb.ModelInferRequest(model_name="negate")
    request.inputs.add(name="x", datatype="INT32", shape=list(values.shape))
    request.raw_input_contents.append(values.tobytes())
    response = stub.ModelInfer(request, timeout=30)
    return np.frombuffer(response.raw_output_contents[0], np.int32).reshape(values.shape)


def _slow_call(url: str) -> str:
    """One long request; its outcome's status code name."""
    request = pb.ModelInferRequest(model_name="slow")
    request.inputs.add(name="x", datatype="FP32", shape=[SLOW_ITEMS, 512])
    request.raw_input_contents.append(np.ones((SLOW_ITEMS, 512), np.float32).tobytes())
    with grpc.insecure_channel(url) as channel:
        try:
            pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)
        except grpc.RpcError as error:
            return error.code().name
    return "OK"


def _wait_ready(server: RunningServer, ready: bool, timeout: float = 60) -> float:
    """Seconds until ServerReady is `ready`, asked on new connections (any front end)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with grpc.insecure_channel(server.url) as channel:
            try:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)
                if stub.ServerReady(pb.ServerReadyRequest(), timeout=1).ready == ready:
                    return time.monotonic() - started
            except grpc.RpcError:
                if not ready:
                    return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"ServerReady did not become {ready}:\n{server.log()}")


def test_answers_stay_their_own_across_front_ends(repo: Path, tmp_path: Path) -> None:
    metrics_port = free_port()
    args = ("--frontends", "2", "--metrics-port", str(metrics_port), "--access-log-ratio", "1")
    with run_server(repo, tmp_path, *args, "--log-format", "json") as server:
        _all_connected(server, 2)
        clients, calls = 16, 40

        def client(index: int) -> int:
            mismatches = 0
            # A connection a client (gRPC shares one between channels unless told not to);
            # the kernel spreads the connections over the front ends.
            own = [("grpc.use_local_subchannel_pool", 1)]
            with grpc.insecure_channel(server.url, options=own) as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)
                for call in range(calls):
                    values = np.arange(3, dtype=np.int32) + index * 1000 + call * 7
                    mismatches += not np.array_equal(_negate(stub, values[None]), -values[None])
            return mismatches

        with ThreadPoolExecutor(clients) as pool:
            assert sum(pool.map(client, range(clients))) == 0
        access = r'"process": "(frontend-\d)".*"rpc": "ModelInfer"'
        serving = Counter(re.findall(access, server.log()))
        assert set(serving) == {"frontend-0", "frontend-1"}, serving
        assert sum(serving.values()) == clients * calls
        stats = triton.InferenceServerClient(server.url).get_inference_statistics("negate")
        assert stats.model_stats[0].inference_stats.success.count == clients * calls
        assert stats.model_stats[0].inference_count == clients * calls
        deadline = time.monotonic() + 5  # front ends send their call counts twice a second
        while True:
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read()
            counted = re.search(
                rb'deepserve_requests_total\{code="OK",model="negate",rpc="ModelInfer"\} (\S+)',
                metrics,
            )
            if counted and float(counted.group(1)) == clients * calls:
                break
            assert time.monotonic() < deadline, counted
            time.sleep(0.1)


def test_a_killed_front_end_fails_its_calls_and_is_replaced(repo: Path, tmp_path: Path) -> None:
    with run_server(repo, tmp_path, "--frontends", "1") as server:
        _all_connected(server, 1)
        engine, [frontend] = _pids(server)
        # Named for ps, top and the benchmarks' CPU by role.
        assert (_process_name(engine), _process_name(frontend)) == ("ds-engine", "ds-frontend-0")
        with ThreadPoolExecutor(1) as pool:
            call = pool.submit(_slow_call, server.url)
            time.sleep(0.5)  # the call is running in the engine
            os.kill(frontend, signal.SIGKILL)
            assert call.result(timeout=10) == "UNAVAILABLE"
        _wait_ready(server, True)
        _, frontends = _pids(server)
        assert frontends[-1] != frontend and _process_name(frontends[-1]) == "ds-frontend-0"
        assert "front end 0 exited (code -9); starting it again" in server.log()
        with grpc.insecure_channel(server.url) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            values = np.array([[1, 2, 3]], np.int32)
            assert np.array_equal(_negate(stub, values), -values)


def test_a_killed_engine_takes_readiness_down_at_once(repo: Path, tmp_path: Path) -> None:
    with run_server(repo, tmp_path, "--frontends", "2") as server:
        _all_connected(server, 2)
        engine, _ = _pids(server)
        outcomes: list[str] = []
        calls = [threading.Thread(target=lambda: outcomes.append(_slow_call(server.url)))]
        calls[0].start()
        time.sleep(0.5)
        os.kill(engine, signal.SIGKILL)
        assert _wait_ready(server, False, timeout=5) < 1.0
        calls[0].join(timeout=10)
        assert outcomes == ["UNAVAILABLE"]
        with grpc.insecure_channel(server.url) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                _negate(pb_grpc.GRPCInferenceServiceStub(channel), np.ones((1, 3), np.int32))
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        _wait_ready(server, True)  # a new engine loaded the models
        assert _pids(server)[0] != engine
        with grpc.insecure_channel(server.url) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            values = np.array([[4, 5, 6]], np.int32)
            assert np.array_equal(_negate(stub, values), -values)


def test_a_port_another_process_holds_is_a_clear_start_error(repo: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "deepserve.server", "--model-repository", str(repo)]
        command += ["--port", str(port), "--http-port", "0", "--frontends", "1"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"cannot bind 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_negative_front_end_count_is_a_clear_start_error(repo: Path) -> None:
    command = [sys.executable, "-m", "deepserve.server", "--model-repository", str(repo)]
    command += ["--port", str(free_port()), "--frontends", "-1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "--frontends must be 0 (one process) or more front ends, got -1" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_shared_memory_region_registered_once_serves_every_front_end(
    repo: Path, tmp_path: Path
) -> None:
    """The engine keeps the registrations and every front end maps them, so a client's calls
    find the region whichever front end its connection reaches."""
    import tritonclient.utils.shared_memory as shm

    args = ("--frontends", "2", "--shared-memory", "on", "--access-log-ratio", "1")
    key = f"/deepserve-split-{os.getpid()}"
    region = shm.create_shared_memory_region("values", key, 24)
    shm.set_shared_memory_region(region, [np.array([[4, 5, 6]], np.int32)])
    try:
        with run_server(repo, tmp_path, *args, "--log-format", "json") as server:
            _all_connected(server, 2)
            triton.InferenceServerClient(server.url).register_system_shared_memory(
                "values", key, 24
            )
            request = pb.ModelInferRequest(model_name="negate")
            tensor = request.inputs.add(name="x", datatype="INT32", shape=[1, 3])
            tensor.parameters["shared_memory_region"].string_param = "values"
            tensor.parameters["shared_memory_byte_size"].int64_param = 12
            output = request.outputs.add(name="y")
            output.parameters["shared_memory_region"].string_param = "values"
            output.parameters["shared_memory_byte_size"].int64_param = 12
            output.parameters["shared_memory_offset"].int64_param = 12

            def call(_: int) -> list[int]:
                own = [("grpc.use_local_subchannel_pool", 1)]  # a connection of its own
                with grpc.insecure_channel(server.url, options=own) as channel:
                    pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
                answer = shm.get_contents_as_numpy(region, np.int32, [1, 3], offset=12)
                return answer.tolist()

            with ThreadPoolExecutor(4) as pool:
                assert list(pool.map(call, range(12))) == [[[-4, -5, -6]]] * 12
            access = r'"process": "(frontend-\d)".*"rpc": "ModelInfer"'
            assert set(re.findall(access, server.log())) == {"frontend-0", "frontend-1"}
            triton.InferenceServerClient(server.url).unregister_system_shared_memory("values")
            with ThreadPoolExecutor(4) as pool:
                refusals = list(pool.map(lambda i: _refusal(server.url, request), range(8)))
            assert refusals == ["NOT_FOUND"] * 8  # gone from every front end
    finally:
        shm.destroy_shared_memory_region(region)


def _refusal(url: str, request: pb.ModelInferRequest) -> str:
    with grpc.insecure_channel(url, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        try:
            pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
        except grpc.RpcError as error:
            return error.code().name
    return "OK"


def test_a_sequence_keeps_its_state_whichever_front_end_each_step_reaches(
    repo: Path, tmp_path: Path
) -> None:
    """The engine holds every sequence's state: each step on a new connection (so the kernel
    spreads them over the front ends) still continues its own sequence."""
    write_model(repo, "accumulate", accumulator(), accumulator_config(max_batch_size=8))
    args = ("--frontends", "2", "--access-log-ratio", "1", "--log-format", "json")
    with run_server(repo, tmp_path, *args) as server:
        _all_connected(server, 2)

        def step(sequence_id: int, value: float, start: bool = False, end: bool = False) -> float:
            own = [("grpc.use_local_subchannel_pool", 1)]
            with grpc.insecure_channel(server.url, options=own) as channel:
                request = pb.ModelInferRequest(model_name="accumulate")
                tensor = request.inputs.add(name="INPUT", datatype="FP32", shape=[1, 1])
                tensor.contents.fp32_contents.append(value)
                request.parameters["sequence_id"].uint64_param = sequence_id
                request.parameters["sequence_start"].bool_param = start
                request.parameters["sequence_end"].bool_param = end
                answer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
            names = [o.name for o in answer.outputs]
            raw = answer.raw_output_contents[names.index("OUTPUT")]
            return float(np.frombuffer(raw, np.float32)[0])

        def walk(sequence_id: int) -> list[float]:
            sums = [step(sequence_id, sequence_id, start=True)]
            sums += [step(sequence_id, 1) for _ in range(8)]
            sums.append(step(sequence_id, 1, end=True))
            return sums

        with ThreadPoolExecutor(6) as pool:
            walks = dict(zip(range(1, 7), pool.map(walk, range(1, 7)), strict=True))
        for sequence_id, sums in walks.items():
            assert sums == [sequence_id + k for k in range(10)], (sequence_id, sums)
        access = r'"process": "(frontend-\d)".*"rpc": "ModelInfer"'
        assert set(re.findall(access, server.log())) == {"frontend-0", "frontend-1"}
        with pytest.raises(grpc.RpcError, match="sequence 1 is not active"):
            step(1, 1)
