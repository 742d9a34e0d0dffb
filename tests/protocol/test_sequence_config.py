"""A sequence model's config read and checked, and a request's sequence parameters parsed: in
process, no server."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from deepserve.server.protocol.errors import InvalidInput, ModelLoadError
from deepserve.server.protocol.sequence_config import (
    SequenceStep,
    sequence_config,
    sequence_step,
)

from ..onnx_models import accumulator_config


def _config(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


def test_the_accumulators_config_gives_its_controls_state_and_slots():
    sequences = sequence_config(_config(accumulator_config(max_batch_size=4, idle_us=7)), 2)
    assert sequences is not None
    assert [(c.name, c.kind, c.datatype) for c in sequences.controls] == [
        ("START", "start", "INT32"),
        ("END", "end", "INT32"),
        ("READY", "ready", "INT32"),
        ("CORRID", "corrid", "UINT64"),
    ]
    assert sequences.hidden_inputs == {"START", "END", "READY", "CORRID", "ACC_IN"}
    assert sequences.hidden_outputs == {"ACC_OUT"}
    assert (sequences.strategy, sequences.max_sequences, sequences.idle_ns) == ("direct", 8, 7000)
    start = sequences.controls[0]
    np.testing.assert_array_equal(start.values([True, False]), [[1], [0]])
    assert start.values([True]).dtype == np.int32
    np.testing.assert_array_equal(sequences.controls[3].values([5, 1 << 63]), [[5], [1 << 63]])
    assert sequences.states[0].initial().shape == (1, 1)


def test_the_oldest_strategy_takes_its_candidates_and_delay():
    text = accumulator_config(
        strategy="oldest { max_candidate_sequences: 32 max_queue_delay_microseconds: 50 }"
    )
    sequences = sequence_config(_config(text))
    assert sequences is not None
    assert (sequences.strategy, sequences.max_sequences, sequences.delay_ns) == (
        "oldest",
        32,
        50_000,
    )


def test_a_model_without_sequence_batching_has_none():
    assert sequence_config(_config("max_batch_size: 4 dynamic_batching { }")) is None


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (("max_batch_size: 4", "max_batch_size: 0"), "needs max_batch_size of at least 1"),
        (("int32_false_true: [ 0, 1 ]", "int32_false_true: [ 1 ]"), "needs two values"),
        (
            ("kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ]", "kind: CONTROL_SEQUENCE_END"),
            "needs int32_false_true, fp32_false_true or bool_false_true",
        ),
        (
            ("kind: CONTROL_SEQUENCE_END", "kind: CONTROL_SEQUENCE_START"),
            "more than one ['start'] control",
        ),
        (
            ("CORRID data_type: TYPE_UINT64", "CORRID data_type: TYPE_FP32"),
            "data_type must be one of",
        ),
        (
            (
                '"ACC_OUT" data_type: TYPE_FP32 dims: [ 1 ]',
                '"ACC_OUT" data_type: TYPE_FP32 dims: [ -1 ]',
            ),
            "must be fixed",
        ),
    ],
)
def test_a_wrong_sequence_config_is_refused_with_what_is_wrong(change, words):
    old, new = change
    text = accumulator_config(max_batch_size=4).replace(old, new, 1)
    assert text != accumulator_config(max_batch_size=4)
    with pytest.raises(ModelLoadError, match=words.replace("[", r"\[").replace("]", r"\]")):
        sequence_config(_config(text))


@pytest.mark.parametrize(
    ("parameters", "step"),
    [
        ({}, None),
        ({"sequence_id": 7, "sequence_start": True}, SequenceStep(7, True, False)),
        ({"sequence_id": "a", "sequence_end": True}, SequenceStep("a", False, True)),
        ({"sequence_id": (1 << 64) - 1}, SequenceStep((1 << 64) - 1)),
    ],
)
def test_sequence_parameters_as_tritonclient_sends_them(parameters, step):
    assert sequence_step(parameters) == step


@pytest.mark.parametrize(
    ("parameters", "words"),
    [
        ({"sequence_start": True}, "need a sequence_id"),
        ({"sequence_id": 1.5}, "unsigned integer or a string"),
        ({"sequence_id": True}, "unsigned integer or a string"),
        ({"sequence_id": -1}, "outside the range of a uint64"),
        ({"sequence_id": 1 << 64}, "outside the range of a uint64"),
        ({"sequence_id": "x" * 300}, "above the limit of 256"),
        ({"sequence_id": 3, "sequence_end": "yes"}, "sequence_end must be a boolean"),
    ],
)
def test_bad_sequence_parameters_say_what_is_wrong(parameters, words):
    with pytest.raises(InvalidInput, match=words):
        sequence_step(parameters)
