"""The Locust user for pipelines: a house number read by one Vision Read call ("Read
<model>"), the text checked against the number in the picture. Idle unless --read-model names
the pipeline (read_number)."""

from __future__ import annotations

import random
from typing import ClassVar

import gevent
from locust import between, task

from deepserve import _calls
from deepserve.results import Reading

from .grpc_user import GrpcUser
from .payloads import Payload


def check_reading(payload: Payload, reading: Reading) -> None:
    wanted = "".join(str(d) for d in payload.digits or ())
    if reading.text != wanted:
        raise ValueError(f"{payload.name}: read '{reading.text}', the picture says '{wanted}'")
    if len(reading.characters) != len(wanted):
        boxes = len(reading.characters)
        raise ValueError(f"{payload.name}: {boxes} boxes for {len(wanted)} digits")


class ReadUser(GrpcUser):
    wait_time = between(0, 0.01)
    numbers: ClassVar[list[Payload]] = []
    """Filled at test start by the locustfile: the house numbers the pipeline reads right alone."""

    @task
    def read(self) -> None:
        model = self.environment.parsed_options.read_model
        if not model or not self.numbers:
            gevent.sleep(1)  # not asked for: idle
            return
        payload = random.choice(self.numbers)
        call = _calls.task("read", payload.pixels, model, "", {})
        self.request(call, f"Read {model}", lambda reading: check_reading(payload, reading))
