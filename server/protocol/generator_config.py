"""A text generator's config: a model whose `backend` is `seq2seq` is an encoder graph and a
one-step decoder graph, and the server runs the decode loop (see server/batching/decode_loop.py).

    backend: "seq2seq"
    model_transaction_policy { decoupled: true }     # stream one response a token
    parameters { key: "max_tokens" value { string_value: "11" } }

Parameters (all optional): `encoder_filename` (encoder.onnx) and `decoder_filename`
(decoder_step.onnx) in the version folder, `tokens_filename` (tokens.txt, one token a line,
in the model folder), `start_token` (<s>) and `end_token` (</s>), `max_tokens` (64: the
longest answer), `max_active` (64: answers decoded together, one step batch), and `batching`:
`continuous` (requests join and leave the step batch at every step) or `request` (a batch is
formed when the last one has ended, as a model running its whole loop in one call would be).

The client sees the same tensors as Triton's text generation models: `text_input` (BYTES [1]),
optional `stream` (BOOL [1]) and `max_tokens` (INT32 [1]); `text_output` (BYTES [1]) and each
of the step graph's extra outputs (the attention weights, one row a token).
"""

from __future__ import annotations

from dataclasses import dataclass

from tritonclient.grpc import model_config_pb2 as mc

from .errors import ModelLoadError
from .numbers import decimal

BACKEND = "seq2seq"
TEXT_INPUT, STREAM_INPUT, MAX_TOKENS_INPUT = "text_input", "stream", "max_tokens"
TEXT_OUTPUT = "text_output"
BATCHING_MODES = ("continuous", "request")
LIMIT = 4096
"""Largest max_tokens / max_active a config may set."""


@dataclass(frozen=True)
class GeneratorConfig:
    encoder_file: str = "encoder.onnx"
    decoder_file: str = "decoder_step.onnx"
    tokens_file: str = "tokens.txt"
    start_token: str = "<s>"
    end_token: str = "</s>"
    max_tokens: int = 64
    max_active: int = 64
    batching: str = "continuous"
    decoupled: bool = False


def is_generator(config: mc.ModelConfig) -> bool:
    return config.backend == BACKEND


def decoupled(config: mc.ModelConfig) -> bool:
    return config.model_transaction_policy.decoupled


def _count(parameters: dict[str, str], key: str, default: int) -> int:
    if key not in parameters:
        return default
    value = decimal(parameters[key])
    if value is None or not 1 <= value <= LIMIT:
        raise ModelLoadError(
            f"parameter '{key}' must be a whole number in 1..{LIMIT}, got {parameters[key]!r}"
        )
    return value


def generator_config(config: mc.ModelConfig) -> GeneratorConfig:
    """The generator's settings from its config's parameters, checked."""
    parameters = {key: value.string_value for key, value in config.parameters.items()}
    if config.max_batch_size != 0:
        raise ModelLoadError(
            f"a {BACKEND} model takes one text a request: max_batch_size must be 0, got "
            f"{config.max_batch_size} (the decode loop batches; set parameter 'max_active')"
        )
    batching = parameters.get("batching", "continuous")
    if batching not in BATCHING_MODES:
        raise ModelLoadError(
            f"parameter 'batching' must be one of {BATCHING_MODES}, got {batching!r}"
        )
    defaults = GeneratorConfig()
    return GeneratorConfig(
        encoder_file=parameters.get("encoder_filename", defaults.encoder_file),
        decoder_file=parameters.get("decoder_filename", defaults.decoder_file),
        tokens_file=parameters.get("tokens_filename", defaults.tokens_file),
        start_token=parameters.get("start_token", defaults.start_token),
        end_token=parameters.get("end_token", defaults.end_token),
        max_tokens=_count(parameters, "max_tokens", defaults.max_tokens),
        max_active=_count(parameters, "max_active", defaults.max_active),
        batching=batching,
        decoupled=decoupled(config),
    )


def complete_generator_config(
    config: mc.ModelConfig, extra_outputs: dict[str, tuple[int, ...]]
) -> mc.ModelConfig:
    """The config with the tensors clients see: those a config lists must be these."""
    completed = mc.ModelConfig()
    completed.CopyFrom(config)
    inputs = [
        mc.ModelInput(name=TEXT_INPUT, data_type=mc.TYPE_STRING, dims=[1]),
        mc.ModelInput(name=STREAM_INPUT, data_type=mc.TYPE_BOOL, dims=[1], optional=True),
        mc.ModelInput(name=MAX_TOKENS_INPUT, data_type=mc.TYPE_INT32, dims=[1], optional=True),
    ]
    outputs = [mc.ModelOutput(name=TEXT_OUTPUT, data_type=mc.TYPE_STRING, dims=[1])]
    outputs += [
        mc.ModelOutput(name=name, data_type=mc.TYPE_FP32, dims=[-1, *dims])
        for name, dims in extra_outputs.items()
    ]
    _check_listed("input", [t.name for t in config.input], [t.name for t in inputs])
    _check_listed("output", [t.name for t in config.output], [t.name for t in outputs])
    del completed.input[:]
    del completed.output[:]
    completed.input.extend(inputs)
    completed.output.extend(outputs)
    return completed


def _check_listed(kind: str, listed: list[str], served: list[str]) -> None:
    unknown = sorted(set(listed) - set(served))
    if unknown:
        raise ModelLoadError(
            f"the config lists {kind}(s) {unknown}, which a {BACKEND} model does not have; "
            f"its {kind}s are {served}"
        )
