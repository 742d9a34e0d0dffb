"""A Locust user for the HTTP port (FastHttpUser): the Vision API's classify with a PNG body,
and KServe v2 infer with binary tensors, every answer checked against its own request."""

from __future__ import annotations

import io
import json
import os
import random
from typing import ClassVar

import numpy as np
from locust import between, task
from locust.contrib.fasthttp import FastHttpUser
from PIL import Image

from . import checks
from .payloads import Payload


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def infer_body(pixels: np.ndarray) -> tuple[bytes, int]:
    """A binary-data infer body for one uint8 digit, and its JSON header's length."""
    image = pixels[None, :, :, None]
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "datatype": "UINT8",
                    "shape": list(image.shape),
                    "parameters": {"binary_data_size": image.nbytes},
                }
            ],
            "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
        }
    ).encode()
    return head + image.tobytes(), len(head)


class RestUser(FastHttpUser):
    """Runs when the locustfile is given --http-url (the server's HTTP port)."""

    abstract = True
    wait_time = between(0, 0.01)
    digits: ClassVar[list[Payload]] = []
    classify_model: ClassVar[str] = "mnist"
    infer_model: ClassVar[str] = "mnist"

    def on_start(self) -> None:
        token = os.environ.get("DEEPSERVE_TOKEN")
        self.auth = {"Authorization": f"Bearer {token}"} if token else {}

    @task
    def classify(self) -> None:
        payload = random.choice(self.digits)
        url = f"/v1/models/{self.classify_model}/classify"
        name = f"HTTP classify {self.classify_model}"
        with self.client.post(
            url, data=png(payload.pixels), headers=self.auth, name=name, catch_response=True
        ) as response:
            try:
                if response.status_code != 200:
                    raise checks.WrongAnswer(f"HTTP {response.status_code}: {response.text}")
                top = response.json()["results"][0]["labels"][0]["label"]
                if payload.digits is not None and top != str(payload.digits[0]):
                    raise checks.WrongAnswer(
                        f"{payload.name}: expected {payload.digits[0]}, got {top}"
                    )
            except Exception as error:
                response.failure(error)

    @task
    def infer(self) -> None:
        payload = random.choice(self.digits)
        body, head = infer_body(payload.pixels)
        headers = {**self.auth, "Inference-Header-Content-Length": str(head)}
        url = f"/v2/models/{self.infer_model}/infer"
        name = f"HTTP infer {self.infer_model}"
        with self.client.post(
            url, data=body, headers=headers, name=name, catch_response=True
        ) as response:
            try:
                if response.status_code != 200:
                    raise checks.WrongAnswer(f"HTTP {response.status_code}: {response.text}")
                length = int(response.headers["Inference-Header-Content-Length"])
                logits = np.frombuffer(response.content[length:], np.float32).reshape(1, -1)
                checks.check_logits(payload, logits)
            except Exception as error:
                response.failure(error)
