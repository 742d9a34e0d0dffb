"""Text generators (a seq2seq model whose decode loop the server runs): the whole answer, or its
tokens as they are decoded, over ModelStreamInfer. The sync and async clients share what is
here; they differ only in how they read the stream.

>>> client.translate("3rd of May 1979").text
'1979-05-03'
>>> for token in client.translate_stream("Thursday, May 3, 1979"):
...     print(token.text, token.attention.argmax())
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import grpc
import numpy as np
from tritonclient.grpc import service_pb2 as pb

from .errors import DeepserveError, from_rpc_error, from_status

TRANSLATOR = "date_translator"
FINAL = "triton_final_response"


@dataclass(frozen=True)
class Token:
    """One token of an answer: its text, and where the model looked for it (its attention
    over the input's bytes; empty when the model gives none)."""

    text: str
    attention: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class Translation:
    """A whole answer: its text and each token's attention, a row a token ([tokens, bytes])."""

    source: str
    text: str
    attention: np.ndarray = field(repr=False)


def request(
    model: str, text: str | bytes, stream: bool, max_tokens: int | None, version: str = ""
) -> pb.ModelInferRequest:
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    message = pb.ModelInferRequest(model_name=model, model_version=version)
    message.parameters["triton_enable_empty_final_response"].bool_param = True
    tensors = [("text_input", "BYTES", struct.pack("<I", len(data)) + data)]
    tensors.append(("stream", "BOOL", b"\x01" if stream else b"\x00"))
    if max_tokens is not None:
        tensors.append(("max_tokens", "INT32", struct.pack("<i", max_tokens)))
    for name, datatype, raw in tensors:
        message.inputs.add(name=name, datatype=datatype, shape=[1])
        message.raw_input_contents.append(raw)
    return message


def _outputs(response: pb.ModelInferResponse) -> tuple[str, np.ndarray]:
    """The text and the attention rows of one response."""
    text, attention = "", np.zeros((0, 0), np.float32)
    for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=False):
        if tensor.name == "text_output":
            (length,) = struct.unpack_from("<I", raw)
            text = raw[4 : 4 + length].decode("utf-8", "replace")
        elif tensor.name == "attention":
            attention = np.frombuffer(raw, np.float32).reshape(list(tensor.shape))
    return text, attention


def read(message: pb.ModelStreamInferResponse) -> tuple[str, np.ndarray] | None:
    """A response's text and attention; None for the stream's empty final response."""
    if message.error_message:
        code = message.infer_response.parameters["error_code"].string_param
        raise from_status(code, message.error_message)
    response = message.infer_response
    if response.parameters[FINAL].bool_param and not response.outputs:
        return None
    return _outputs(response)


def token(message: pb.ModelStreamInferResponse) -> Token | None:
    """One streamed response as a token (its attention row); None at the stream's end."""
    got = read(message)
    if got is None:
        return None
    text, attention = got
    return Token(text, attention[0] if len(attention) else attention)


def tokens(responses: Iterator[pb.ModelStreamInferResponse]) -> Iterator[Token]:
    try:
        for message in responses:
            if (got := token(message)) is None:
                return
            yield got
    except grpc.RpcError as error:
        raise from_rpc_error(error) from None


async def tokens_async(
    responses: AsyncIterator[pb.ModelStreamInferResponse],
) -> AsyncIterator[Token]:
    try:
        async for message in responses:
            if (got := token(message)) is None:
                return
            yield got
    except grpc.RpcError as error:
        raise from_rpc_error(error) from None


def translation(source: str, message: pb.ModelStreamInferResponse) -> Translation:
    got = read(message)
    if got is None:
        raise DeepserveError("the server ended the answer without sending it")
    return Translation(source, *got)
