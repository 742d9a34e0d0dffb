"""Where CUDA graphs are on by default and ONNX Runtime refuses to capture the model, the
model loads without them; where the config asked for them, the refusal is the load error."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from deepserve.server.models import model
from deepserve.server.protocol.errors import ModelLoadError
from deepserve.server.runtime import sessions
from deepserve.server.runtime.sessions import CPU, CUDA, ProviderChoice
from deepserve.server.settings import ServerSettings

MNIST = Path(__file__).resolve().parents[2] / "models" / "mnist"


def _config(**parameters: str) -> mc.ModelConfig:
    config = text_format.Parse((MNIST / "config.pbtxt").read_text(), mc.ModelConfig())
    for key, value in parameters.items():
        config.parameters[key].string_value = value
    return config


@pytest.fixture()
def graphs_refused(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """ONNX Runtime as on a GPU host when an operator stays on the CPU: a session asking for
    graph capture fails, one without loads. Returns whether each attempt asked for graphs."""
    attempts: list[bool] = []
    create = sessions.create_session

    def refusing(path, choice, threads, spinning=False):  # type: ignore[no-untyped-def]
        attempts.append(choice.cuda_graphs)
        if choice.cuda_graphs:
            raise ModelLoadError("ONNX Runtime cannot load model.onnx: not all nodes on CUDA")
        return create(path, ProviderChoice([CPU], "test"), threads, spinning)

    monkeypatch.setattr(sessions, "create_session", refusing)
    monkeypatch.setattr(sessions.ort, "get_available_providers", lambda: [CUDA, CPU])
    return attempts


def _load(config: mc.ModelConfig) -> object:
    choice = sessions.choose_providers(config, "auto", [CUDA, CPU])
    return model._session_with_graphs_if_possible(
        MNIST / "1" / "model.onnx", choice, 1, ServerSettings(), config, 0, "model 'mnist'"
    )


def test_graphs_on_by_default_fall_back_when_refused(graphs_refused, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        session = _load(_config())
    assert session is not None and graphs_refused == [True, False]
    assert "no CUDA graphs" in caplog.text and "padded to fixed sizes" in caplog.text


def test_graphs_asked_for_fail_the_load_when_refused(graphs_refused) -> None:
    with pytest.raises(ModelLoadError, match="not all nodes on CUDA"):
        _load(_config(cuda_graphs="1"))
    assert graphs_refused == [True]
