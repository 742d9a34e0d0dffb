"""What Triton's perf_analyzer does against a gRPC server (`perf_analyzer -i grpc -m MODEL`),
replayed with tritonclient: server metadata, model metadata and config, then inference in a
loop, with statistics read before and after and matched by model name and version "1"."""

from __future__ import annotations

import numpy as np
import tritonclient.grpc as triton

from ..server_process import RunningServer


def test_perf_analyzer_call_sequence(server: RunningServer) -> None:
    client = triton.InferenceServerClient(server.url)
    assert "statistics" in client.get_server_metadata().extensions
    metadata = client.get_model_metadata("add_sub", "")
    config = client.get_model_config("add_sub", "").config
    batch = 1
    inputs = []
    for tensor in metadata.inputs:
        shape = [batch if d == -1 else d for d in tensor.shape]
        data = np.random.default_rng(0).random(shape, dtype=np.float32)
        item = triton.InferInput(tensor.name, shape, tensor.datatype)
        item.set_data_from_numpy(data)
        inputs.append(item)
    assert config.max_batch_size >= batch

    def stats_v1() -> triton.service_pb2.ModelStatistics:
        response = client.get_inference_statistics("add_sub", "")
        matches = [s for s in response.model_stats if s.name == "add_sub" and s.version == "1"]
        assert len(matches) == 1
        return matches[0]

    before = stats_v1()
    outputs = [triton.InferRequestedOutput(t.name) for t in metadata.outputs]
    requests = 40
    for _ in range(requests):
        client.infer("add_sub", inputs, outputs=outputs)
    after = stats_v1()
    assert after.inference_stats.success.count - before.inference_stats.success.count == requests
    assert after.inference_count - before.inference_count == requests * batch
    client.close()
