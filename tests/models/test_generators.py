"""Text generators in process: what a seq2seq config and its graphs must be (each mistake named
at load), and the decode loop's two batching modes side by side."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from deepserve.server.models import repository
from deepserve.server.models.generators import LoadedGenerator, load_generator
from deepserve.server.models.model import load_version
from deepserve.server.protocol.errors import ModelLoadError, ServerBusy
from deepserve.server.settings import ServerSettings

from ..generator_models import echo_config, write_echo
from ..onnx_models import add_sub, write_model


def _load(model_dir: Path, settings: ServerSettings | None = None) -> LoadedGenerator:
    config = repository.read_config(model_dir)
    return load_generator(model_dir, config, 1, settings or ServerSettings(), ThreadPoolExecutor(2))


def test_the_completed_config_lists_what_clients_send_and_get(tmp_path: Path) -> None:
    loaded = _load(write_echo(tmp_path))
    assert [(t.name, t.optional) for t in loaded.config.input] == [
        ("text_input", False),
        ("stream", True),
        ("max_tokens", True),
    ]
    assert [(t.name, list(t.dims)) for t in loaded.config.output] == [
        ("text_output", [1]),
        ("attention", [-1, 32]),
    ]
    graphs = loaded.loop.graphs
    assert graphs.constants == ("memory",) and graphs.recurrent == {"position": "position_out"}
    assert graphs.initial["position"].shape == (1, 1) and graphs.extras == ("attention",)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: _config(d, "max_batch_size: 8"), "max_batch_size must be 0, got 8"),
        (lambda d: _config(d, 'parameters { key: "batching" value { string_value: "x" } }'),
         "parameter 'batching' must be one of"),
        (lambda d: _config(d, 'parameters { key: "max_tokens" value { string_value: "0" } }'),
         "'max_tokens' must be a whole number in 1..4096"),
        (lambda d: _config(d, 'output [ { name: "logits" data_type: TYPE_FP32 dims: [ 1 ] } ]'),
         r"lists output\(s\) \['logits'\]"),
        (lambda d: (d / "tokens.txt").write_text("<s>\n</s>\na\n"), "logits have 97 entries"),
        (lambda d: (d / "tokens.txt").unlink(), "tokens file 'tokens.txt' is missing"),
        (lambda d: (d / "1" / "decoder_step.onnx").unlink(), "no graph file decoder_step.onnx"),
        (lambda d: (d / "1" / "encoder.onnx").write_bytes(add_sub()),
         "the encoder must take one input, uint8"),
        (lambda d: _config(d, _parameter("decoder_filename", "../x")),
         "resolves outside|must be a file name"),
        (lambda d: _config(d, 'parameters { key: "end_token" value { string_value: "<end>" } }'),
         "end_token '<end>' is not in the tokens file"),
    ],
)  # fmt: skip
def test_load_errors_name_the_mistake(tmp_path: Path, change, expected: str) -> None:
    model_dir = write_echo(tmp_path)
    change(model_dir)
    with pytest.raises(ModelLoadError, match=expected):
        _load(model_dir)


def _config(model_dir: Path, extra: str) -> None:
    (model_dir / "config.pbtxt").write_text(echo_config().replace("max_batch_size: 0", "") + extra)


def test_a_step_input_the_loop_cannot_fill_is_refused(tmp_path: Path) -> None:
    model_dir = write_echo(tmp_path)
    # the encoder's output renamed: the step's 'memory' then comes from nowhere
    (model_dir / "1" / "encoder.onnx").write_bytes(
        (model_dir / "1" / "encoder.onnx").read_bytes().replace(b"memory", b"memorx")
    )
    with pytest.raises(ModelLoadError, match="input 'memory' is neither 'token'"):
        _load(model_dir)


def test_decoupled_is_for_generators(tmp_path: Path) -> None:
    config_text = "model_transaction_policy { decoupled: true }\nmax_batch_size: 8"
    model_dir = write_model(tmp_path, "plain", add_sub(), config_text)
    config = repository.read_config(model_dir)
    with pytest.raises(ModelLoadError, match="decoupled is for text generators"):
        load_version(model_dir, config, 1, ServerSettings(), ThreadPoolExecutor(1))


async def _answer(loaded: LoadedGenerator, text: str, arrivals: dict[str, float]) -> str:
    spelled = ""
    async for token in loaded.loop.generate(text.encode(), 40):
        arrivals.setdefault(text, time.perf_counter())
        spelled += token.text
    return spelled


@pytest.mark.parametrize("batching", ["continuous", "request"])
def test_a_late_request_joins_at_the_next_step_only_when_continuous(
    tmp_path: Path, batching: str
) -> None:
    """A long answer under way; a short one arrives: continuous batching starts it at once,
    request-level batching only after the long one has ended."""
    model_dir = write_echo(tmp_path, config=echo_config(batching=batching))
    loaded = _load(model_dir)
    arrivals: dict[str, float] = {}
    ended: dict[str, float] = {}

    async def run() -> None:
        async def long() -> None:
            assert await _answer(loaded, "a" * 30, arrivals) == "a" * 30
            ended["long"] = time.perf_counter()

        first = asyncio.create_task(long())
        while "a" * 30 not in arrivals:
            await asyncio.sleep(0)
        assert await _answer(loaded, "b", arrivals) == "b"
        await first

    asyncio.run(run())
    if batching == "continuous":
        assert arrivals["b"] < ended["long"]
    else:
        assert arrivals["b"] > ended["long"]


def test_the_queue_is_bounded(tmp_path: Path) -> None:
    loaded = _load(write_echo(tmp_path), ServerSettings(default_max_queue_size=2))

    async def run() -> None:
        waiting = [loaded.loop.generate(b"x", 4) for _ in range(2)]
        started = [asyncio.ensure_future(anext(w)) for w in waiting]
        await asyncio.sleep(0)
        with pytest.raises(ServerBusy, match="max_queue_size 2"):
            await anext(loaded.loop.generate(b"x", 4))
        await asyncio.gather(*started)
        for w in waiting:
            await w.aclose()

    asyncio.run(run())


def _parameter(key: str, value: str) -> str:
    return f'parameters {{ key: "{key}" value {{ string_value: "{value}" }} }}'
