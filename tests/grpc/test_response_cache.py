"""The response cache against a real server: a model whose config enables it answers a request
seen before without running (the same answer, counted as a cache hit in Triton's statistics
fields), over gRPC and HTTP; a model that does not enable it runs every time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tritonclient.grpc as triton
import tritonclient.http as triton_http

from ..onnx_models import ADD_SUB_CONFIG, add_sub, write_model
from ..server_process import free_port, run_server

CACHED = ADD_SUB_CONFIG.replace('name: "add_sub"', 'name: "cached"') + (
    "response_cache { enable: true }\n"
)


def _inputs(module, value: float) -> list:
    a = np.full((1, 16), value, np.float32)
    b = np.arange(16, dtype=np.float32).reshape(1, 16)
    inputs = [
        module.InferInput("INPUT0", [1, 16], "FP32"),
        module.InferInput("INPUT1", [1, 16], "FP32"),
    ]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    return inputs


def _counts(client: triton.InferenceServerClient, model: str) -> tuple[int, int, int, int]:
    stats = client.get_inference_statistics(model).model_stats[0]
    inference = stats.inference_stats
    return (
        stats.execution_count,
        inference.success.count,
        inference.cache_hit.count,
        inference.cache_miss.count,
    )


def test_a_request_seen_before_is_answered_without_a_run(tmp_path: Path) -> None:
    repository = tmp_path / "models"
    write_model(repository, "cached", add_sub(), CACHED)
    write_model(repository, "add_sub", add_sub(), ADD_SUB_CONFIG)
    http_port = free_port()
    with run_server(
        repository, tmp_path, "--response-cache-mb", "1", "--http-port", str(http_port)
    ) as server:
        client = triton.InferenceServerClient(server.url)
        first = client.infer("cached", _inputs(triton, 2.0)).as_numpy("OUTPUT0")
        again = client.infer("cached", _inputs(triton, 2.0)).as_numpy("OUTPUT1")
        np.testing.assert_array_equal(first, 2.0 + np.arange(16)[None])
        np.testing.assert_array_equal(again, 2.0 - np.arange(16)[None])
        assert _counts(client, "cached") == (1, 2, 1, 1)  # one run, one hit, one miss
        client.infer("cached", _inputs(triton, 3.0))  # other input bytes: a run
        assert _counts(client, "cached") == (2, 3, 1, 2)

        # Over HTTP (one connection: a split server's front ends each keep their own answers)
        web = triton_http.InferenceServerClient(f"127.0.0.1:{http_port}")
        for _ in range(2):
            answer = web.infer("cached", _inputs(triton_http, 5.0)).as_numpy("OUTPUT0")
            np.testing.assert_array_equal(answer, 5.0 + np.arange(16)[None])
        executions, successes, hits, _ = _counts(client, "cached")
        assert (executions, successes, hits) == (3, 5, 2)

        for _ in range(2):  # a model that does not ask for the cache runs every time
            client.infer("add_sub", _inputs(triton, 2.0))
        assert _counts(client, "add_sub") == (2, 2, 0, 0)
        web.close()
        client.close()
