"""The config's input_bounds, read at load: mistakes in it are load errors that say what to
write."""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from deepserve.server.models.model import _input_bounds
from deepserve.server.protocol.errors import ModelLoadError

CONFIG = """
input { name: "class" data_type: TYPE_INT64 dims: 1 }
input { name: "noise" data_type: TYPE_FP32 dims: 4 }
"""


def _bounds(text: str) -> dict[str, tuple[int, int]]:
    config = text_format.Parse(CONFIG, mc.ModelConfig())
    config.parameters["input_bounds"].string_value = text
    return _input_bounds(config)


def test_bounds_are_read_per_input() -> None:
    assert _bounds("class:0..9") == {"class": (0, 9)}
    assert _bounds(" class:-3..3 , ") == {"class": (-3, 3)}
    assert _bounds("") == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("class:0-9", "'class:0-9' is not name:low..high"),
        ("noise:0..1", "names 'noise', which is not an integer input of the model"),
        ("label:0..1", "names 'label', which is not an integer input"),
        ("class:9..0", "'class:9..0' has low above high"),
    ],
)
def test_mistakes_are_load_errors(text: str, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message):
        _bounds(text)
