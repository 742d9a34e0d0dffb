"""`client.translate` and `client.translate_stream`, sync and async, against a text generator on
a real server (the echo model: its answer is its input, so each is known)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as triton

from deepserve import AsyncClient, Client, InvalidInputError, Token, Translation

from ..generator_models import TEXT_LENGTH, echo_config, write_echo
from ..server_process import RunningServer, run_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("sdk-generation")
    write_echo(folder / "models", "echo")
    write_echo(folder / "models", "endless", echo_config(max_tokens=4096), endless=True)
    with run_server(folder / "models", folder) as running:
        yield running


def test_translate_gives_the_answer_and_its_attention(server: RunningServer) -> None:
    with Client(server.url) as client:
        answer = client.translate("May 3, 1979", model="echo")
    assert isinstance(answer, Translation)
    assert answer.text == "May 3, 1979" and answer.source == "May 3, 1979"
    assert answer.attention.shape == (11, TEXT_LENGTH)
    np.testing.assert_array_equal(answer.attention.argmax(axis=1), np.arange(11))


def test_translate_stream_yields_tokens_as_they_come(server: RunningServer) -> None:
    with Client(server.url) as client:
        tokens = list(client.translate_stream("05/03/79", model="echo"))
        assert all(isinstance(t, Token) for t in tokens)
        assert "".join(t.text for t in tokens) == "05/03/79"
        assert [int(t.attention.argmax()) for t in tokens] == list(range(8))
        short = client.translate("abcdef", model="echo", max_tokens=2)
        assert short.text == "ab"


def _executions(server: RunningServer, model: str) -> int:
    stats = triton.InferenceServerClient(server.url).get_inference_statistics(model)
    return stats.model_stats[0].execution_count


def test_leaving_the_loop_early_stops_the_decoding(server: RunningServer) -> None:
    with Client(server.url) as client:
        for count, _ in enumerate(client.translate_stream("go", model="endless")):
            if count == 3:
                break
    time.sleep(0.5)
    before = _executions(server, "endless")
    time.sleep(0.5)
    assert _executions(server, "endless") == before < 4096


def test_bad_input_is_an_invalid_input_error(server: RunningServer) -> None:
    with Client(server.url) as client:
        with pytest.raises(InvalidInputError, match="longer than the 32 bytes"):
            client.translate("x" * 40, model="echo")
        with pytest.raises(InvalidInputError, match=r"outside 1\.\.40"):
            list(client.translate_stream("abc", model="echo", max_tokens=99))


def test_async_translations_at_once(server: RunningServer) -> None:
    texts = [f"text number {i}" for i in range(12)]

    async def main() -> tuple[list[str], str]:
        async with AsyncClient(server.url) as client:
            answers = await asyncio.gather(*(client.translate(t, model="echo") for t in texts))
            streamed = "".join(
                [token.text async for token in client.translate_stream("3.5.79", model="echo")]
            )
            with pytest.raises(InvalidInputError, match="zero byte"):
                await client.translate("a\0b", model="echo")
        return [a.text for a in answers], streamed

    answers, streamed = asyncio.run(main())
    assert answers == texts and streamed == "3.5.79"
