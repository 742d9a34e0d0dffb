"""Loading a text generator (`backend: "seq2seq"`): its two graphs, what each tensor does in the
decode loop, its tokens, and the completed config clients see."""

from __future__ import annotations

import logging
from concurrent.futures import Executor
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnxruntime as ort
from tritonclient.grpc import model_config_pb2 as mc

from ..batching.decode_loop import DecodeLoop, LoopGraphs
from ..batching.stats import ModelStats
from ..observability.histograms import VersionHistograms
from ..protocol.errors import ModelLoadError
from ..protocol.generator_config import (
    GeneratorConfig,
    complete_generator_config,
    generator_config,
)
from ..runtime import sessions as runtime
from ..runtime.session_options import session_tuning
from ..settings import ServerSettings
from . import repository

log = logging.getLogger(__name__)

MAX_TOKENS_FILE_BYTES = 1 << 20
_NUMPY = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(float16)": np.float16}


class LoadedGenerator(NamedTuple):
    config: mc.ModelConfig
    """Completed: the tensors clients see."""
    loop: DecodeLoop
    stats: ModelStats
    histograms: VersionHistograms
    providers: list[str]


def _session(
    model_dir: Path, version: int, filename: str, settings: ServerSettings, config: mc.ModelConfig
) -> ort.InferenceSession:
    path = repository.inside(model_dir, f"{version}/{filename}", "graph file")
    if not path.is_file():
        raise ModelLoadError(f"version {version} has no graph file {filename}")
    choice = runtime.choose_providers(config, settings.device, model_file=path)
    threads = session_tuning(config, settings.intra_op_threads, settings.max_intra_op_threads)
    return runtime.create_session(path, choice, threads, settings.intra_op_spinning)


def read_tokens(model_dir: Path, generator: GeneratorConfig) -> tuple[str, ...]:
    path = repository.inside(model_dir, generator.tokens_file, "tokens file")
    if not path.is_file():
        raise ModelLoadError(f"tokens file '{generator.tokens_file}' is missing")
    if path.stat().st_size > MAX_TOKENS_FILE_BYTES:
        raise ModelLoadError(f"tokens file '{generator.tokens_file}' is larger than 1 MiB")
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as exc:
        raise ModelLoadError(f"tokens file is not UTF-8 text (byte {exc.start})") from None
    if lines and lines[-1] == "":
        lines.pop()  # the last line's newline; a token may be a space, so nothing is stripped
    return tuple(lines)


def _static_dims(arg: ort.NodeArg, what: str) -> tuple[int, ...]:
    dims = arg.shape[1:]
    if not all(isinstance(d, int) and d > 0 for d in dims):
        raise ModelLoadError(
            f"{what} '{arg.name}' must have fixed dims after the batch, has {arg.shape}"
        )
    return tuple(dims)


def loop_graphs(
    encoder: ort.InferenceSession,
    step: ort.InferenceSession,
    tokens: tuple[str, ...],
    generator: GeneratorConfig,
) -> LoopGraphs:
    """What each tensor does, from the graphs' names: the step's `token` input and `logits`
    output; a step input X with an output X_out is carried from step to step (first from the
    encoder's X, or zeros); any other step input is the encoder's output of that name; other
    step outputs go out with each token."""
    (text,) = encoder.get_inputs() if len(encoder.get_inputs()) == 1 else (None,)
    if (
        text is None
        or text.type != "tensor(uint8)"
        or len(text.shape) != 2
        or not isinstance(text.shape[1], int)
    ):
        raise ModelLoadError(
            "the encoder must take one input, uint8 [N, text length] (the text's bytes)"
        )
    encoded = {o.name for o in encoder.get_outputs()}
    step_outputs = {o.name: o for o in step.get_outputs()}
    if "logits" not in step_outputs:
        raise ModelLoadError("the decoder step has no output 'logits'")
    width = step_outputs["logits"].shape[-1]
    if isinstance(width, int) and width != len(tokens):
        raise ModelLoadError(
            f"the decoder's logits have {width} entries, the tokens file {len(tokens)} lines"
        )
    constants: list[str] = []
    recurrent: dict[str, str] = {}
    initial: dict[str, np.ndarray] = {}
    has_token = False
    for arg in step.get_inputs():
        if arg.name == "token":
            if arg.type != "tensor(int64)":
                raise ModelLoadError("the decoder step's input 'token' must be int64 [N]")
            has_token = True
        elif f"{arg.name}_out" in step_outputs:
            recurrent[arg.name] = f"{arg.name}_out"
            if arg.name not in encoded:
                dtype = _NUMPY.get(arg.type)
                if dtype is None:
                    raise ModelLoadError(
                        f"the decoder step's input '{arg.name}' has type {arg.type}"
                    )
                initial[arg.name] = np.zeros((1, *_static_dims(arg, "decoder step input")), dtype)
        elif arg.name in encoded:
            constants.append(arg.name)
        else:
            raise ModelLoadError(
                f"the decoder step's input '{arg.name}' is neither 'token', nor carried (no output "
                f"'{arg.name}_out'), nor an output of the encoder"
            )
    if not has_token:
        raise ModelLoadError("the decoder step has no input 'token' (the previous token)")
    extras = tuple(
        name for name in step_outputs if name != "logits" and name not in recurrent.values()
    )
    for name in extras:
        _static_dims(step_outputs[name], "decoder step output")
    for which in ("start_token", "end_token"):
        if getattr(generator, which) not in tokens:
            raise ModelLoadError(f"{which} '{getattr(generator, which)}' is not in the tokens file")
    return LoopGraphs(
        encoder=encoder,
        step=step,
        text_input=text.name,
        text_length=text.shape[1],
        constants=tuple(constants),
        recurrent=recurrent,
        initial=initial,
        extras=extras,
        tokens=tokens,
        start=tokens.index(generator.start_token),
        end=tokens.index(generator.end_token),
    )


def load_generator(
    model_dir: Path,
    config: mc.ModelConfig,
    version: int,
    settings: ServerSettings,
    executor: Executor,
) -> LoadedGenerator:
    """The completed config and the decode loop of one version. Blocking: call from a thread."""
    generator = generator_config(config)
    for what in ("encoder_filename", "decoder_filename", "tokens_filename"):
        repository.check_file_name(what, getattr(generator, what.replace("filename", "file")))
    encoder = _session(model_dir, version, generator.encoder_file, settings, config)
    step = _session(model_dir, version, generator.decoder_file, settings, config)
    graphs = loop_graphs(encoder, step, read_tokens(model_dir, generator), generator)
    extra_dims = {
        o.name: _static_dims(o, "decoder step output")
        for o in step.get_outputs()
        if o.name in graphs.extras
    }
    completed = complete_generator_config(config, extra_dims)
    stats = ModelStats()
    histograms = VersionHistograms.of(config.name, version)
    loop = DecodeLoop(
        config.name,
        graphs,
        executor,
        stats,
        settings.default_max_queue_size,
        generator.max_active,
        continuous=generator.batching == "continuous",
        histograms=histograms,
        max_tokens=generator.max_tokens,
    )
    _warm_up(loop)
    log.info(
        "model '%s' version %d: a seq2seq generator, %s batching of up to %d answers a step, "
        "up to %d tokens an answer",
        config.name, version, generator.batching, generator.max_active, generator.max_tokens,
    )  # fmt: skip
    return LoadedGenerator(completed, loop, stats, histograms, encoder.get_providers())


def _warm_up(loop: DecodeLoop) -> None:
    """One encoder run and one step, so the first request does not pay for ONNX Runtime's
    first-run allocations; a graph that cannot run fails the load here."""
    graphs = loop.graphs
    try:
        encoded = loop.run_encoder(loop.encode_text(b"warm up"[: graphs.text_length]))
    except Exception as exc:
        raise ModelLoadError(f"the encoder does not run on a text: {exc}") from exc
    feeds = {"token": np.array([graphs.start], np.int64)}
    for name in graphs.constants:
        feeds[name] = encoded[name]
    for name in graphs.recurrent:
        feeds[name] = encoded[name] if name in encoded else graphs.initial[name]
    names = ["logits", *graphs.recurrent.values(), *graphs.extras]
    try:
        loop.run_step(feeds, names)
    except Exception as exc:
        raise ModelLoadError(
            f"the decoder step does not run on the encoder's outputs: {exc}"
        ) from exc
