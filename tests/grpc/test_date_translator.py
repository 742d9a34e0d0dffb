"""The bundled date translator served: the server runs its decode loop (encoder once, the step
graph a character) and must give the tokens greedy decoding through the two graphs gives, on
every held-out date of its training report, with the attention of each character; tritonclient
streams it with its own calls; HTTP's generate_stream too."""

from __future__ import annotations

import asyncio
import json
import queue
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import requests
import tritonclient.grpc as triton

from deepserve import AsyncClient
from deepserve.training import dates

from ..server_process import RunningServer

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "date_translator"
TEXT_LENGTH = 40


def _on_dates(days: list, formats: dict[str, dates.Format]) -> list[tuple[str, str]]:
    """As the training report draws them: each held-out date once, formats in turn."""
    names = sorted(formats)
    return [(formats[names[i % len(names)]](day), day.isoformat()) for i, day in enumerate(days)]


def _greedy(texts: list[str]) -> list[str]:
    """Greedy decoding through the exported graphs, written here from the model card."""
    encoder = ort.InferenceSession(str(MODEL / "1" / "encoder.onnx"))
    step = ort.InferenceSession(str(MODEL / "1" / "decoder_step.onnx"))
    tokens = (MODEL / "tokens.txt").read_text().split("\n")[:-1]
    text = np.zeros((len(texts), TEXT_LENGTH), np.uint8)
    for row, value in enumerate(texts):
        data = value.encode()
        text[row, : len(data)] = np.frombuffer(data, np.uint8)
    memory, mask, hidden = encoder.run(None, {"text": text})
    context = np.zeros_like(hidden)
    token = np.zeros(len(texts), np.int64)
    answers = [""] * len(texts)
    done = np.zeros(len(texts), bool)
    for _ in range(11):
        feeds = {"token": token, "hidden": hidden, "memory": memory, "mask": mask}
        logits, hidden, context, _ = step.run(None, {**feeds, "context": context})
        token = logits.argmax(1).astype(np.int64)
        for row, chosen in enumerate(token):
            done[row] |= tokens[chosen] == "</s>"
            if not done[row]:
                answers[row] += tokens[chosen]
    return answers


def _translate_all(url: str, texts: list[str]) -> list[str]:
    async def main() -> list[str]:
        async with AsyncClient(url) as client:
            limit = asyncio.Semaphore(64)

            async def one(text: str) -> str:
                async with limit:
                    return (await client.translate(text)).text

            return await asyncio.gather(*(one(t) for t in texts))

    return asyncio.run(main())


def test_held_out_dates_as_the_report_says(bundled_server: RunningServer) -> None:
    """Every date of the report's test sets, translated by the server, many at once (sharing
    steps): exact match as the report measured it, at least 99 % on unseen dates both in the
    training formats and in formats held out of training."""
    report = json.loads((MODEL / "training_report.json").read_text())
    unseen = sorted(dates.held_out_dates(2000, report["seed"]))
    every = {**dates.TRAIN_FORMATS, **dates.HELD_OUT_FORMATS}
    for names, key, least in (
        (report["train_formats"], "exact_match_unseen_dates", 0.99),
        (report["held_out_formats"], "exact_match_held_out_formats", 0.99),
    ):
        pairs = _on_dates(unseen, {name: every[name] for name in names})
        answers = _translate_all(bundled_server.url, [text for text, _ in pairs])
        match = float(np.mean([a == iso for a, (_, iso) in zip(answers, pairs, strict=True)]))
        assert match == pytest.approx(report[key], abs=1e-9), key
        assert match >= least, key


def test_the_servers_loop_gives_greedy_decodings_tokens(bundled_server: RunningServer) -> None:
    texts = ["3rd of May 1979", "05/03/79", "Thursday, May 3, 1979", "the 1st of January, 2000",
             "31.12.29", "not a date at all", "", "1999-13-45"]  # fmt: skip
    assert _translate_all(bundled_server.url, texts) == _greedy(texts)


def test_tritonclient_streams_a_character_a_response(bundled_server: RunningServer) -> None:
    received: queue.Queue = queue.Queue()
    client = triton.InferenceServerClient(bundled_server.url)
    client.start_stream(callback=lambda result, error: received.put((result, error)))
    text = triton.InferInput("text_input", [1], "BYTES")
    text.set_data_from_numpy(np.array([b"3rd of May 1979"], dtype=object))
    stream = triton.InferInput("stream", [1], "BOOL")
    stream.set_data_from_numpy(np.array([True]))
    client.async_stream_infer("date_translator", [text, stream], enable_empty_final_response=True)
    characters, rows = "", []
    while True:
        result, error = received.get(timeout=10)
        assert error is None, error
        if not result.get_response().outputs:
            assert result.get_response().parameters["triton_final_response"].bool_param
            break
        characters += result.as_numpy("text_output")[0].decode()
        rows.append(result.as_numpy("attention")[0])
    client.stop_stream()
    assert characters == "1979-05-03"
    attention = np.array(rows)
    assert attention.shape == (10, TEXT_LENGTH)
    np.testing.assert_allclose(attention.sum(axis=1), 1.0, atol=1e-4)
    assert attention[:, len("3rd of May 1979") :].max() < 1e-3  # padding is masked out
    # the year's digits are read from the year
    assert set(attention[:4].argmax(axis=1)) <= set(range(11, 15))


def test_http_generate_stream(bundled_server: RunningServer) -> None:
    url = f"http://127.0.0.1:{bundled_server.http_port}/v2/models/date_translator/generate_stream"
    with requests.post(url, json={"text_input": "May 3, 1979"}, stream=True, timeout=10) as reply:
        events = [json.loads(line[6:]) for line in reply.iter_lines() if line.startswith(b"data: ")]
    assert "".join(e["text_output"] for e in events) == "1979-05-03"
