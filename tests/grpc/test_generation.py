"""Text generators end to end: the server runs the decode loop of an encoder and a one-step
decoder (a model that echoes its input, so every answer is known), streams a token a response
over ModelStreamInfer with tritonclient's own stream calls and over HTTP's generate extension,
answers once when asked, and stops decoding for clients that go away."""

from __future__ import annotations

import asyncio
import json
import queue
import struct
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as triton
from hypothesis import strategies as st
from tritonclient.utils import InferenceServerException

from deepserve import generation

from ..generator_models import TEXT_LENGTH, echo_config, write_echo
from ..server_process import RunningServer, free_port, run_server
from .test_fuzz import CI_EXAMPLES, run_property
from .test_sequences import _tree_rss_mb as tree_rss_mb


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("generation")
    models = folder / "models"
    write_echo(models, "echo", echo_config(max_active=4))
    write_echo(models, "echo_once", echo_config(decoupled=False))
    write_echo(models, "endless", echo_config(max_tokens=4096), endless=True)
    http_port, metrics_port = free_port(), free_port()
    with run_server(
        models, folder, "--http-port", str(http_port), "--metrics-port", str(metrics_port)
    ) as running:
        running.http_port, running.metrics_port = http_port, metrics_port
        yield running


def _inputs(text: bytes | str, stream: bool | None = None, max_tokens: int | None = None) -> list:
    value = text.encode() if isinstance(text, str) else text
    tensor = triton.InferInput("text_input", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([value], dtype=object))
    inputs = [tensor]
    if stream is not None:
        flag = triton.InferInput("stream", [1], "BOOL")
        flag.set_data_from_numpy(np.array([stream]))
        inputs.append(flag)
    if max_tokens is not None:
        most = triton.InferInput("max_tokens", [1], "INT32")
        most.set_data_from_numpy(np.array([max_tokens], np.int32))
        inputs.append(most)
    return inputs


class Stream:
    """A tritonclient stream and what came back on it, in order."""

    def __init__(self, url: str) -> None:
        self.client = triton.InferenceServerClient(url)
        self.received: queue.Queue = queue.Queue()
        self.client.start_stream(callback=lambda result, error: self.received.put((result, error)))

    def next(self, timeout: float = 10.0):
        return self.received.get(timeout=timeout)

    def until_final(self, timeout: float = 10.0) -> list:
        """Results up to the empty final response (which is not included)."""
        results = []
        while True:
            result, error = self.next(timeout)
            assert error is None, error
            flag = result.get_response().parameters["triton_final_response"].bool_param
            if flag and not result.get_response().outputs:
                return results
            results.append(result)

    def close(self, cancel: bool = False) -> None:
        self.client.stop_stream(cancel_requests=cancel)
        self.client.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture
def stream(server: RunningServer) -> Iterator[Stream]:
    opened = Stream(server.url)
    yield opened
    opened.close()


def test_streamed_tokens_spell_the_answer_with_attention_per_token(stream: Stream) -> None:
    text = "3rd of May 1979"
    stream.client.async_stream_infer(
        "echo", _inputs(text, stream=True), request_id="r1", enable_empty_final_response=True
    )
    results = stream.until_final()
    assert len(results) == len(text)  # one response a character, the end token not sent
    assert "".join(r.as_numpy("text_output")[0].decode() for r in results) == text
    for position, result in enumerate(results):
        attention = result.as_numpy("attention")
        assert attention.shape == (1, TEXT_LENGTH)
        assert attention[0].argmax() == position and attention.sum() == 1.0
        assert result.get_response().id == "r1"
        assert result.get_response().parameters["triton_final_response"].bool_param is False


def test_without_stream_a_decoupled_model_answers_once_over_the_stream(stream: Stream) -> None:
    stream.client.async_stream_infer("echo", _inputs("hello"), enable_empty_final_response=True)
    result, error = stream.next()
    assert error is None, error
    assert result.as_numpy("text_output").tolist() == [b"hello"]
    assert result.as_numpy("attention").shape == (5, TEXT_LENGTH)
    assert result.get_response().parameters["triton_final_response"].bool_param is True


def test_max_tokens_cuts_the_answer(stream: Stream) -> None:
    stream.client.async_stream_infer(
        "echo", _inputs("abcdefgh", stream=True, max_tokens=3), enable_empty_final_response=True
    )
    assert [r.as_numpy("text_output")[0] for r in stream.until_final()] == [b"a", b"b", b"c"]


def test_concurrent_streams_share_steps_and_never_mix(server: RunningServer) -> None:
    """More answers at once than the loop's 4 slots, of different lengths, over one stream:
    each request's tokens spell its own text."""
    texts = [f"text {i} " + "x" * (i % 9) for i in range(24)]
    opened = Stream(server.url)
    try:
        for i, text in enumerate(texts):
            opened.client.async_stream_infer(
                "echo",
                _inputs(text, stream=True),
                request_id=str(i),
                enable_empty_final_response=True,
            )
        spelled: dict[str, str] = {str(i): "" for i in range(len(texts))}
        finals = 0
        while finals < len(texts):
            result, error = opened.next()
            assert error is None, error
            response = result.get_response()
            if response.parameters["triton_final_response"].bool_param:
                finals += 1
            else:
                spelled[response.id] += result.as_numpy("text_output")[0].decode()
        assert spelled == {str(i): text for i, text in enumerate(texts)}
    finally:
        opened.close()
    stats = triton.InferenceServerClient(server.url).get_inference_statistics("echo").model_stats[0]
    tokens = sum(len(t) + 1 for t in texts)  # each answer's characters and its end token
    assert stats.execution_count < tokens  # steps were shared


def test_time_to_first_token_is_a_metric(server: RunningServer, stream: Stream) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    stream.client.async_stream_infer(
        "echo_once", _inputs("metrics"), enable_empty_final_response=True
    )
    assert stream.next()[1] is None
    scrape = requests.get(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).text
    counts = {
        (sample.labels["model"], sample.name): sample.value
        for family in text_string_to_metric_families(scrape)
        if family.name == "deepserve_time_to_first_token_seconds"
        for sample in family.samples
        if sample.name.endswith("_count")
    }
    assert counts[("echo_once", "deepserve_time_to_first_token_seconds_count")] >= 1
    assert not any(model == "" for model, _ in counts)


def test_without_the_final_flag_only_tokens_come(stream: Stream) -> None:
    stream.client.async_stream_infer("echo", _inputs("ab", stream=True))
    stream.client.async_stream_infer("echo_once", _inputs("done"))
    seen = [stream.next()[0].as_numpy("text_output")[0] for _ in range(3)]
    assert sorted(seen) == [b"a", b"b", b"done"]
    with pytest.raises(queue.Empty):
        stream.next(timeout=0.5)


def test_model_infer_on_a_decoupled_model_is_refused(server: RunningServer) -> None:
    client = triton.InferenceServerClient(server.url)
    with pytest.raises(InferenceServerException) as caught:
        client.infer("echo", _inputs("hello"))
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "decoupled" in caught.value.message() and "ModelStreamInfer" in caught.value.message()


def test_a_model_that_is_not_decoupled_answers_model_infer(server: RunningServer) -> None:
    client = triton.InferenceServerClient(server.url)
    result = client.infer("echo_once", _inputs("05/03/79"))
    assert result.as_numpy("text_output").tolist() == [b"05/03/79"]
    with pytest.raises(InferenceServerException, match="not decoupled"):
        client.infer("echo_once", _inputs("05/03/79", stream=True))


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        (lambda: _inputs("x" * (TEXT_LENGTH + 1)), f"33 bytes, longer than the {TEXT_LENGTH}"),
        (lambda: _inputs(b"\xff\xfe"), "not UTF-8"),
        (lambda: _inputs("abc", max_tokens=0), "input 'max_tokens': 0 is outside 1..40"),
        (lambda: _inputs("abc", max_tokens=41), "outside 1..40"),
        (lambda: _inputs("a\0b"), "zero byte"),
    ],
)
def test_bad_requests_name_what_is_wrong(stream: Stream, inputs, expected: str) -> None:
    stream.client.async_stream_infer("echo", inputs(), enable_empty_final_response=True)
    result, error = stream.next()
    assert result is None and expected in str(error)
    # the stream goes on
    stream.client.async_stream_infer("echo", _inputs("ok"), enable_empty_final_response=True)
    assert stream.next()[0].as_numpy("text_output").tolist() == [b"ok"]


def _executions(server: RunningServer, model: str) -> int:
    client = triton.InferenceServerClient(server.url)
    return client.get_inference_statistics(model).model_stats[0].execution_count


def test_a_client_that_goes_away_stops_the_decoding(server: RunningServer) -> None:
    """An endless answer (4096 tokens allowed): the steps stop when its stream is cancelled.
    (A stream whose client only closes its side is answered to the end, as Triton does.)"""
    opened = Stream(server.url)
    opened.client.async_stream_infer("endless", _inputs("abc", stream=True))
    for _ in range(5):
        assert opened.next()[1] is None
    opened.close(cancel=True)
    time.sleep(0.3)
    before = _executions(server, "endless")
    time.sleep(0.5)
    assert _executions(server, "endless") == before
    assert before < 4096


# ---- HTTP: the generate extension --------------------------------------------------------------


def _http(server: RunningServer, path: str) -> str:
    return f"http://127.0.0.1:{server.http_port}/v2/models/{path}"


def test_http_generate_answers_once(server: RunningServer) -> None:
    reply = requests.post(
        _http(server, "echo/generate"), json={"text_input": "May 3, 1979", "id": "g"}
    )
    assert reply.status_code == 200, reply.text
    document = reply.json()
    assert document["text_output"] == "May 3, 1979" and document["id"] == "g"
    assert np.array(document["attention"]).shape == (11, TEXT_LENGTH)
    assert document["model_name"] == "echo"


def _events(reply: requests.Response) -> list[dict]:
    events = []
    for line in reply.iter_lines():
        if line.startswith(b"data: "):
            events.append(json.loads(line[6:]))
    return events


def test_http_generate_stream_sends_an_event_a_token(server: RunningServer) -> None:
    with requests.post(
        _http(server, "echo/generate_stream"), json={"text_input": "1979-05-03"}, stream=True
    ) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        events = _events(reply)
    assert "".join(e["text_output"] for e in events) == "1979-05-03"
    assert all(len(e["attention"]) == 1 for e in events)
    with requests.post(
        _http(server, "echo/generate_stream"), json={"text_input": "ab", "stream": False}
    ) as reply:
        assert [e["text_output"] for e in _events(reply)] == ["ab"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"text_input": "x" * 40}, "longer than"),
        ({"text": "abc"}, "'text' is not an input of model 'echo'"),
        ({"text_input": 5}, "expected BYTES values, got 5"),
        ({"text_input": "a", "max_tokens": "3"}, "expected INT32 values"),
        ({"text_input": "a", "stream": True}, "answers once"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_http_generate_errors_are_400_and_say_why(server: RunningServer, body, expected) -> None:
    for route in ("generate", "generate_stream"):
        if route == "generate_stream" and "answers once" in expected:
            continue
        reply = requests.post(_http(server, f"echo/{route}"), json=body)
        assert reply.status_code == 400, (route, reply.text)
        assert expected in reply.json()["error"], reply.text


def test_http_generate_serves_models_that_are_not_generators(server: RunningServer) -> None:
    """Any model answers generate; a generator not decoupled refuses generate_stream's stream."""
    reply = requests.post(_http(server, "echo_once/generate"), json={"text_input": "once"})
    assert reply.json()["text_output"] == "once"
    reply = requests.post(_http(server, "echo_once/generate_stream"), json={"text_input": "x"})
    assert reply.status_code == 400 and "not decoupled" in reply.json()["error"]


def test_http_stream_client_that_goes_away_stops_the_decoding(server: RunningServer) -> None:
    with requests.post(
        _http(server, "endless/generate_stream"), json={"text_input": "go"}, stream=True
    ) as reply:
        lines = reply.iter_lines()
        for _ in range(3):
            next(lines)
    time.sleep(0.5)
    before = _executions(server, "endless")
    time.sleep(0.5)
    assert _executions(server, "endless") == before


def test_many_clients_at_once_over_http(server: RunningServer) -> None:
    def ask(i: int) -> str:
        reply = requests.post(_http(server, "echo/generate"), json={"text_input": f"client {i}"})
        return reply.json()["text_output"]

    with ThreadPoolExecutor(16) as pool:
        assert list(pool.map(ask, range(32))) == [f"client {i}" for i in range(32)]


# ---- streams abandoned, and fuzzed ----------------------------------------------------------


def test_ten_thousand_abandoned_streams_leave_no_memory_behind(server: RunningServer) -> None:
    """Clients that start an endless answer and go away after its first token: each answer
    leaves the step batch, and the server's memory comes back to where it was."""
    from tritonclient.grpc import service_pb2_grpc as pb_grpc

    async def abandon(count: int) -> None:
        async with grpc.aio.insecure_channel(server.url) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            limit = asyncio.Semaphore(64)

            async def one(i: int) -> None:
                async with limit:
                    call = stub.ModelStreamInfer()
                    await call.write(generation.request("endless", f"go {i}", True, None))
                    first = await call.read()
                    assert not first.error_message, first.error_message
                    call.cancel()

            await asyncio.gather(*(one(i) for i in range(count)))
        await asyncio.sleep(0.5)

    pid = server.process.pid
    asyncio.run(abandon(1000))  # warm: allocators and caches reach their working size
    baseline = tree_rss_mb(pid)
    before = _executions(server, "endless")
    for _ in range(5):
        asyncio.run(abandon(2000))
    after = tree_rss_mb(pid)
    steps = _executions(server, "endless") - before
    print(f"RSS {baseline:.1f} MB after 1,000 abandoned streams, {after:.1f} after 10,000 more")
    assert after <= baseline * 1.10
    time.sleep(0.3)
    assert _executions(server, "endless") - before == steps  # nothing decodes for nobody
    assert steps < 10_000 * 50  # each stopped within a few steps, far from its 4096 tokens


@st.composite
def stream_requests(draw: st.DrawFn):
    """ModelStreamInfer requests to a generator: half of them well formed with fuzzed values
    (texts of any bytes and lengths, max_tokens of any size, stream on or off), half with odd
    datatypes, shapes, raw sizes, unknown inputs and outputs, odd parameters."""
    from tritonclient.grpc import service_pb2 as pb

    message = pb.ModelInferRequest(model_name=draw(st.sampled_from(["echo", "echo_once"])))
    printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=32)
    text = draw(
        printable.map(str.encode)
        | st.binary(max_size=40)
        | st.sampled_from([b"x" * 33, b"\xff\xfe", b"a\x00b", "\u00e9t\u00e9".encode()])
    )
    raws = {
        "text_input": struct.pack("<I", len(text)) + text,
        "stream": draw(st.sampled_from([b"\x01", b"\x00", b"\x07"])),
        "max_tokens": struct.pack("<i", draw(st.integers(-5, 60))),
        "other": b"\x00" * 4,
    }
    right = {"text_input": "BYTES", "stream": "BOOL", "max_tokens": "INT32", "other": "FP32"}
    if draw(st.booleans()):  # well formed
        names = ["text_input", *draw(st.sets(st.sampled_from(["stream", "max_tokens"])))]
        for name in names:
            message.inputs.add(name=name, datatype=right[name], shape=[1])
            message.raw_input_contents.append(raws[name])
        return message
    names = draw(st.lists(st.sampled_from(list(right)), max_size=4))
    for name in names:
        datatype = draw(st.sampled_from([right[name], "BYTES", "BOOL", "INT32", "UINT8"]))
        shape = draw(st.sampled_from([[1], [2], [], [1, 1], [-1], [0]]))
        raw = draw(st.binary(max_size=12)) if draw(st.booleans()) else raws[name]
        message.inputs.add(name=name, datatype=datatype, shape=shape)
        message.raw_input_contents.append(raw)
    if draw(st.booleans()):
        message.outputs.add(name=draw(st.sampled_from(["text_output", "attention", "logits"])))
    if draw(st.booleans()):
        key = draw(st.sampled_from(["triton_enable_empty_final_response", "priority", "timeout"]))
        message.parameters[key].int64_param = draw(st.integers(-2, 2))
    return message


def test_fuzzed_stream_requests_never_fail_inside(server: RunningServer) -> None:
    from tritonclient.grpc import service_pb2_grpc as pb_grpc

    codes: Counter = Counter()
    channel = grpc.insecure_channel(server.url)
    stub = pb_grpc.GRPCInferenceServiceStub(channel)

    def check(request) -> None:
        for response in stub.ModelStreamInfer(iter([request]), timeout=30):
            if response.error_message:
                code = response.infer_response.parameters["error_code"].string_param
                codes[code] += 1
                assert code != "INTERNAL" and code != "UNKNOWN", response.error_message
                assert "/tmp/" not in response.error_message
            else:
                codes["OK"] += 1

    run_property(CI_EXAMPLES, stream_requests(), check)
    print(f"stream fuzz: {dict(codes.most_common())}")
    channel.close()
    with Stream(server.url) as opened:  # still serving
        opened.client.async_stream_infer("echo", _inputs("still here"))
        assert opened.next()[0].as_numpy("text_output").tolist() == [b"still here"]
