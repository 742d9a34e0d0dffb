"""ONNX Runtime's errors as the server's: the model refusing the inputs, inputs whose shapes do
not fit together inside the graph (client errors, 400 / INVALID_ARGUMENT), or a failure. The
messages keep what a caller can act on and drop ONNX Runtime's source paths and C++ names."""

from __future__ import annotations

import re

from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument

from ..protocol.errors import InferenceFailed, InvalidInput, ServingError

# A model whose inputs each fit the config can still be called with shapes that disagree
# with each other (a non-batching model's variable dimensions): ONNX Runtime reports it as FAIL.
_SHAPES_DISAGREE = re.compile(r"reshape|broadcast|shape|dimension|dim value", re.IGNORECASE)
_SOURCE = re.compile(r"\S*/\S+\.(?:h|cc|cpp|cu):\d+\s+(?:[^()]*\([^)]*\)(?: const)?\s+)?")
_CHECK = re.compile(r"[^.]*? was false\.\s*")
_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ")


def message(exc: Exception) -> str:
    text = _PREFIX.sub("", str(exc)).split("Status Message: ", 1)[-1]
    return " ".join(_CHECK.sub("", _SOURCE.sub("", text)).split())


def translate(exc: Exception) -> ServingError:
    if isinstance(exc, InvalidArgument):
        return InvalidInput(f"the model rejected the inputs: {message(exc)}")
    if isinstance(exc, Fail) and _SHAPES_DISAGREE.search(str(exc)):
        return InvalidInput(f"the inputs' shapes do not fit together in the model: {message(exc)}")
    return InferenceFailed(f"inference failed: {message(exc)}")
