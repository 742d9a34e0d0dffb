"""The Locust user for a class-conditional generator: 16 digits of a random class a request,
each checked to be a 28x28 digit with ink (a blank or saturated image is a failure: the model
is then wrong, not merely slow). Idle unless --generate-model names the model (mnist_cgan)."""

from __future__ import annotations

import random

import gevent
from locust import between, task

from deepserve import generative

from .digit_check import check_digits
from .grpc_user import GrpcUser


class GenerateUser(GrpcUser):
    wait_time = between(0, 0.01)

    @task
    def generate(self) -> None:
        model = self.environment.parsed_options.generate_model
        if not model:
            gevent.sleep(1)  # not asked for: idle
            return
        digit, seed = random.randrange(10), random.randrange(1 << 30)
        call = generative.generate_call(model, digit, 16, seed, "")
        self.request(
            call, f"Generate {model} (16 digits)", lambda o: check_digits(generative.images(o))
        )
