"""Storms of gzip-compressed messages at the message limit (a few hundred KB on the wire each):
every one gets a clear answer, the server keeps serving, and its resident memory comes back to
where it was after each storm."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from ..core.test_limits import rss_mb
from ..server_process import run_server

MODELS = Path(__file__).resolve().parents[2] / "models"
LIMIT_MB = 32
BOMB_BYTES = (LIMIT_MB - 1) << 20
ROUNDS, PER_ROUND, CONNECTIONS = 3, 16, 4


def _bomb() -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="mnist")
    request.inputs.add(name="image", datatype="UINT8", shape=[BOMB_BYTES])
    request.raw_input_contents.append(bytes(BOMB_BYTES))
    return request


async def _storm(url: str) -> Counter[str]:
    channels = [
        grpc.aio.insecure_channel(
            url,
            compression=grpc.Compression.Gzip,
            options=[("grpc.max_send_message_length", LIMIT_MB << 20)],
        )
        for _ in range(CONNECTIONS)
    ]
    request = _bomb()

    async def one(channel: grpc.aio.Channel) -> str:
        try:
            await pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)
        except grpc.aio.AioRpcError as error:
            return error.code().name
        return "OK"

    codes = await asyncio.gather(*(one(channels[i % CONNECTIONS]) for i in range(PER_ROUND)))
    for channel in channels:
        await channel.close()
    return Counter(codes)


def _classify_digit(url: str) -> None:
    request = pb.ModelInferRequest(model_name="mnist")
    request.inputs.add(name="image", datatype="UINT8", shape=[1, 28, 28, 1])
    request.raw_input_contents.append(np.zeros((1, 28, 28, 1), np.uint8).tobytes())
    with grpc.insecure_channel(url) as channel:
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)


def test_rss_comes_back_after_each_storm_of_compressed_messages(tmp_path: Path) -> None:
    with run_server(
        MODELS, tmp_path, "--model", "mnist", "--max-message-mb", str(LIMIT_MB)
    ) as server:
        pid = server.process.pid
        _classify_digit(server.url)
        time.sleep(1.5)
        before = rss_mb(pid)
        peaks, afters, codes = [], [], Counter[str]()
        for _ in range(ROUNDS):
            codes += asyncio.run(_storm(server.url))
            peaks.append(rss_mb(pid))
            # The server checks its size every second; one that tried while the storm's
            # memory was in use waits up to 8 s before it tries again.
            settled = time.monotonic() + 12
            time.sleep(3)
            while rss_mb(pid) >= before * 1.1 and time.monotonic() < settled:
                time.sleep(0.5)
            afters.append(rss_mb(pid))
        _classify_digit(server.url)
    print(
        f"{ROUNDS} storms of {PER_ROUND} gzip messages of {BOMB_BYTES >> 20} MiB: {dict(codes)}; "
        f"RSS {before:.0f} MB before, {[round(p) for p in peaks]} as each ended, "
        f"{[round(a) for a in afters]} 3 to 12 s later"
    )
    assert set(codes) <= {"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"}, codes
    # On a loaded machine one message's buffer was seen still in use in a gRPC thread's heap
    # for many seconds (not garbage: no trim gives it back); never more than that one.
    assert max(afters) < before * 1.1 + BOMB_BYTES / (1 << 20)
    # Storms do not add up: the last leaves no more than the ones before it did (that one
    # buffer aside).
    assert afters[-1] < max(afters[:-1]) + BOMB_BYTES / (1 << 20) / 2
