"""`client.sequence(model)`: one sequence of a stateful model as a session, sync and async,
against the bundled LSTM digit reader on a real server."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from deepserve import AsyncClient, Client, DeepserveError, InvalidInputError

from ..grpc.test_lstm_reader import whole_image_logits
from ..mnist_sample import digits
from ..server_process import RunningServer, run_server

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("sdk-sequences")
    shutil.copytree(ROOT / "models" / "lstm_reader", folder / "models" / "lstm_reader")
    with run_server(folder / "models", folder) as running:
        yield running


def test_a_session_reads_a_digit_row_by_row(server: RunningServer) -> None:
    images, labels = digits()
    expected = whole_image_logits(images[:3])
    with Client(server.url) as client:
        for index in range(3):
            with client.sequence("lstm_reader") as reading:
                for row in range(0, 28, 4):
                    logits = reading.send(images[index][None, row : row + 4], end=row == 24)
            np.testing.assert_allclose(logits["logits"][0], expected[index], atol=1e-5)
            with pytest.raises(DeepserveError, match="has ended"):
                reading.send(images[index][None, :1])
        # A string id, named by the caller, and a mapping of inputs.
        with client.sequence("lstm_reader", "reader-7") as reading:
            assert reading.id == "reader-7"
            for row in range(28):
                out = reading.send({"rows": images[7][None, row : row + 1]}, end=row == 27)
        assert out["logits"][0].argmax() == labels[7]


def test_async_sessions_read_digits_at_once(server: RunningServer) -> None:
    images, labels = digits()

    async def read(client: AsyncClient, index: int) -> int:
        async with client.sequence("lstm_reader") as reading:
            for row in range(0, 28, 7):
                out = await reading.send(images[index][None, row : row + 7], end=row == 21)
        return int(out["logits"][0].argmax())

    async def main() -> list[int]:
        async with AsyncClient(server.url) as client:
            return await asyncio.gather(*(read(client, i) for i in range(12)))

    predicted = asyncio.run(main())
    assert (np.array(predicted) == labels[:12]).mean() >= 0.9


def test_a_step_of_a_sequence_the_server_does_not_hold_is_a_clear_error(server: RunningServer):
    with Client(server.url) as client:
        reading = client.sequence("lstm_reader", 424242, started=True)  # it never was
        with pytest.raises(InvalidInputError, match="sequence 424242 is not active"):
            reading.send(digits()[0][0][None, :1])
