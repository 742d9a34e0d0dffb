"""The bundled word vectors served: words to unit vectors exactly as the graph gives them, the
nearest words to a word or a vector found as a search over the graph's own table finds them,
batched by the server; unknown words answered as unknown (never a made-up vector); bad word
lists and vectors refused naming what was wrong."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton
from onnx import numpy_helper
from PIL import Image
from tritonclient.utils import InferenceServerException

from deepserve import AsyncClient, Client, DeepserveError, UnknownWordsError

from ..server_process import RunningServer

MODELS = Path(__file__).resolve().parents[2] / "models"


def _table() -> tuple[list[str], np.ndarray]:
    """The vocabulary and unit vectors, read from the embed graph's own nodes."""
    graph = onnx.load(str(MODELS / "word_embed" / "1" / "model.onnx")).graph
    encoder = next(node for node in graph.node if node.op_type == "LabelEncoder")
    keys = next(a for a in encoder.attribute if a.name == "keys_strings").strings
    table = next(t for t in graph.initializer if t.name == "table")
    return [k.decode() for k in keys], numpy_helper.to_array(table)


def test_embed_gives_the_graphs_vectors(bundled_server: RunningServer) -> None:
    words = ["list", "tuple", "thread", "monday"]
    session = ort.InferenceSession(str(MODELS / "word_embed" / "1" / "model.onnx"))
    expected = session.run(["vector"], {"word": np.array(words, object)[:, None]})[0]
    with Client(bundled_server.url) as client:
        got = client.embed(words)
        one = client.embed("list")
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(one, expected[0])
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_similar_is_a_search_over_the_table(bundled_server: RunningServer) -> None:
    vocabulary, table = _table()
    index = {word: i for i, word in enumerate(vocabulary)}
    with Client(bundled_server.url) as client:
        for word in ("monday", "integer", "windows", "socket"):
            found = client.similar(word, k=10)
            cosines = table @ table[index[word]]
            best = [vocabulary[i] for i in np.argsort(-cosines)[1:11]]
            assert [n.word for n in found] == best, word
            np.testing.assert_allclose(
                [n.score for n in found], [cosines[index[w]] for w in best], atol=1e-5
            )
        # A vector asks the same question without the word (which is then its own nearest).
        by_vector = client.similar(table[index["monday"]] * 2.5, k=3)
        near_monday = {n.word for n in client.similar("monday", k=5)}
    assert by_vector[0].word == "monday"
    # Semantically close words are close: the card's categories, through the server.
    assert {"sunday", "thursday"} & near_monday


def test_concurrent_searches_are_batched_and_each_gets_its_own(
    bundled_server: RunningServer,
) -> None:
    vocabulary, table = _table()
    words = vocabulary[200:328]
    with Client(bundled_server.url) as client, ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda w: client.similar(w, k=3), words))
    for word, answer in zip(words, answers, strict=True):
        cosines = table @ table[vocabulary.index(word)]
        assert [n.word for n in answer] == [vocabulary[i] for i in np.argsort(-cosines)[1:4]]
    stats = triton.InferenceServerClient(bundled_server.url).get_inference_statistics(
        "word_similar"
    )
    sizes = [batch.batch_size for batch in stats.model_stats[0].batch_stats]
    assert max(sizes) > 1, sizes  # 16 callers at once: the batcher ran searches together


def test_async_client(bundled_server: RunningServer) -> None:
    async def run() -> tuple[np.ndarray, list]:  # type: ignore[type-arg]
        async with AsyncClient(bundled_server.url) as client:
            return await client.embed(["set"]), await client.similar("set", k=4)

    vectors, found = asyncio.run(run())
    assert vectors.shape == (1, 64) and len(found) == 4 and "set" not in [n.word for n in found]


def test_unknown_words_are_named_not_made_up(bundled_server: RunningServer) -> None:
    with Client(bundled_server.url) as client:
        with pytest.raises(
            UnknownWordsError, match="not in the vocabulary: 'zzqx', 'Ünïcode'"
        ) as e:
            client.embed(["list", "zzqx", "Ünïcode"])
        assert e.value.words == ["zzqx", "Ünïcode"]
        with pytest.raises(UnknownWordsError):
            client.similar("qwertyuiop")
    client = triton.InferenceServerClient(bundled_server.url)
    given = triton.InferInput("word", [2, 1], "BYTES")
    given.set_data_from_numpy(np.array([[b"list"], [b"qwertyuiop"]], object))
    answer = client.infer("word_embed", [given])
    assert answer.as_numpy("known").ravel().tolist() == [True, False]
    assert not answer.as_numpy("vector")[1].any()


def _refusal(server: RunningServer, model: str, tensor: triton.InferInput) -> str:
    client = triton.InferenceServerClient(server.url)
    with pytest.raises(InferenceServerException) as refused:
        client.infer(model, [tensor])
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    return refused.value.message()


def _words(array: np.ndarray) -> triton.InferInput:
    tensor = triton.InferInput("word", list(array.shape), "BYTES")
    tensor.set_data_from_numpy(array)
    return tensor


def _vectors(array: np.ndarray) -> triton.InferInput:
    tensor = triton.InferInput("vector", list(array.shape), "FP32")
    tensor.set_data_from_numpy(array)
    return tensor


def test_bad_word_lists_and_vectors_are_refused(bundled_server: RunningServer) -> None:
    embed, similar = "word_embed", "word_similar"
    cases = [
        (embed, _words(np.zeros((0, 1), object)), "batch size 0 is outside 1..256"),
        (embed, _words(np.array([[b"a"]] * 300, object)), "batch size 300 is outside 1..256"),
        (embed, _words(np.array([[b"list"], [b"\xff\xfe"]], object)), "not UTF-8"),
        (embed, _words(np.array([[b"a", b"b"]], object)), "expected shape [-1, 1], got [1, 2]"),
        (similar, _vectors(np.full((1, 64), np.nan, np.float32)), "element [0, 0] is nan"),
        (similar, _vectors(np.full((2, 64), np.inf, np.float32)), "is inf"),
        (similar, _vectors(np.zeros((1, 32), np.float32)), "expected shape [-1, 64], got [1, 32]"),
    ]
    for model, tensor, message in cases:
        assert message in _refusal(bundled_server, model, tensor), message
    with Client(bundled_server.url) as client:
        for call, message in (
            (lambda: client.embed([]), "no words given"),
            (lambda: client.embed(["w"] * 257), "at most 256 words a call; got 257"),
            (lambda: client.similar("list", k=0), "k is how many nearest words, 1 to 31; got 0"),
            (lambda: client.similar(np.zeros(64), k=3), "a zero vector has no direction"),
            (lambda: client.similar([[[1.0]]]), "a vector is a flat list of numbers"),
        ):
            with pytest.raises(DeepserveError, match=message.replace("(", r"\(")):
                call()
        assert client.similar("list", k=1)  # still serving


def test_similar_command_prints_and_plots(bundled_server: RunningServer, tmp_path: Path) -> None:
    out = tmp_path / "map.png"
    command = [
        sys.executable, "-m", "deepserve.cli", "similar", "monday", "integer", "-k", "3",
        "--plot", str(out), "--url", bundled_server.url,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    with Client(bundled_server.url) as client:
        expected = [
            f"{w}: " + ", ".join(f"{n.word} {n.score:.2f}" for n in client.similar(w, k=3))
            for w in ("monday", "integer")
        ]
    lines = result.stdout.strip().splitlines()
    assert lines[:2] == expected
    assert lines[2] == f"wrote {out}: 8 words"
    with Image.open(out) as picture:
        pixels = np.asarray(picture.convert("RGB"))
    assert pixels.shape == (900, 900, 3) and (pixels < 200).any(axis=2).mean() > 0.005
    unknown = subprocess.run([*command[:4], "zzqx", "--url", bundled_server.url],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert unknown.returncode != 0 and "not in the vocabulary: 'zzqx'" in unknown.stderr
