"""Locust load test of deepserve over gRPC, with every answer checked.

    locust -f loadtests/locustfile.py --host localhost:8001 --headless -u 16 -r 4 -t 60s \
        --csv results/load --html results/load.html

Users: `TensorUser` (ModelInfer with MNIST digits), `VisionUser` (Classify MNIST digits,
Detect and Segment digit scenes) over gRPC, and with --sequence-model lstm_reader
`SequenceUser` (a digit read --sequence-rows rows a request, each step a request and the
whole digit timed from its first row to its answer), and with --translate-model
date_translator `TranslateUser` (a date streamed through the translator, timed to its first
and its last token, the answer checked), and with --act-model cartpole_policy `ActUser` (a
CartPole episode played through the policy, each step a request, the episode failed when the
pole falls before --act-min-return steps), and with --generate-model mnist_cgan `GenerateUser`
(16 digits of a random class a request, each checked for a digit's ink), and with
--similar-model word_similar `WordsUser` (8 words embedded, then one searched for, checked),
and with --read-model read_number `ReadUser` (a house number read by the pipeline in one call,
its text checked).
The HTTP port has its own locustfile, loadtests/locustfile_http.py, with the same options and
checks. Which models and how often: --classify-model, --infer-model, --detect-model,
--segment-model (empty skips that task) and --task-weights
"classify=3,infer=3,detect=1,segment=1"; --images FOLDER sends your images instead (answers then
checked for shape only). Every option also reads DEEPSERVE_LOCUST_<OPTION> from the environment.

Before the load, each payload is sent once alone; payloads whose answer is not the known one
there are left out (a model is not 100 % accurate), unless fewer than half pass: then all stay,
so a wrong model shows up as failures.
"""

from __future__ import annotations

import os
import random
import time
from typing import ClassVar, TypeVar

import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()  # grpc's sync API cooperates with Locust's gevent loop from here on

import gevent  # noqa: E402
import numpy as np  # noqa: E402
from locust import between, events, task  # noqa: E402

from deepserve import Client, _calls  # noqa: E402
from loadtests import checks  # noqa: E402
from loadtests.act_user import ActUser  # noqa: E402, F401  (a user class Locust finds here)
from loadtests.generate_user import GenerateUser  # noqa: E402, F401
from loadtests.grpc_user import GrpcUser  # noqa: E402
from loadtests.http_user import RestUser  # noqa: E402
from loadtests.payloads import (  # noqa: E402
    Payload,
    digit_scenes,
    image_folder,
    mnist_digits,
    number_scenes,
)
from loadtests.read_user import ReadUser, check_reading  # noqa: E402
from loadtests.translate_user import TranslateUser, date_pairs  # noqa: E402
from loadtests.words_user import WordsUser  # noqa: E402, F401

T = TypeVar("T")

DEFAULTS = {
    "classify_model": "mnist",
    "infer_model": "mnist",
    "detect_model": "ssd",
    "segment_model": "segmentation",
    # A sequence model reading digits row by row (lstm_reader); empty: SequenceUser idles.
    "sequence_model": "",
    "sequence_rows": "4",
    # A text generator turning dates into ISO (date_translator); empty: TranslateUser idles.
    "translate_model": "",
    # A policy playing CartPole (cartpole_policy); empty: ActUser idles.
    "act_model": "",
    "act_min_return": "475",
    # A class-conditional generator (mnist_cgan); empty: GenerateUser idles.
    "generate_model": "",
    # Word vectors (word_similar, word_embed); empty: WordsUser idles.
    "similar_model": "",
    "embed_model": "word_embed",
    # A pipeline reading house numbers (read_number); empty: ReadUser idles.
    "read_model": "",
    "task_weights": "classify=3,infer=3,detect=1,segment=1",
    "images": "",
    "http_url": "",
}


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    for key, default in DEFAULTS.items():
        env = f"DEEPSERVE_LOCUST_{key.upper()}"
        parser.add_argument(
            f"--{key.replace('_', '-')}",
            default=os.environ.get(env, default),
            include_in_web_ui=True,
            help=f"(env {env})",
        )


class Payloads:
    """Filled once per process at test start (the reference pass)."""

    digits: ClassVar[list[Payload]] = []
    sequence_digits: ClassVar[list[Payload]] = []
    scenes: ClassVar[list[Payload]] = []
    segment_scenes: ClassVar[list[Payload]] = []
    weights: ClassVar[dict[str, int]] = {}


def _reference(items: list[T], answer, check) -> list[T]:
    kept = []
    for payload in items:
        try:
            check(payload, answer(payload))
            kept.append(payload)
        except Exception:
            continue
    return kept if len(kept) * 2 >= len(items) else items


@events.test_start.add_listener
def _prepare(environment, **_) -> None:
    options = environment.parsed_options
    Payloads.weights = {
        name: int(weight)
        for name, weight in (pair.split("=") for pair in options.task_weights.split(",") if pair)
    }
    if options.images:
        custom = image_folder(options.images)
        Payloads.digits = Payloads.scenes = Payloads.segment_scenes = custom
        return
    client = Client(
        environment.host or "localhost:8001", retries=3, token=os.environ.get("DEEPSERVE_TOKEN")
    )
    digits, scenes = mnist_digits(200), digit_scenes(32)
    if options.classify_model or options.infer_model:
        model = options.classify_model or options.infer_model
        digits = _reference(
            digits, lambda p: client.classify(p.pixels, model=model), checks.check_classification
        )
    segment_scenes = scenes
    if options.detect_model:
        scenes = _reference(
            scenes,
            lambda p: client.detect(p.pixels, model=options.detect_model),
            checks.check_detections,
        )
    if options.segment_model:
        segment_scenes = _reference(
            segment_scenes,
            lambda p: client.segment(p.pixels, model=options.segment_model),
            checks.check_segmentation,
        )
    if options.sequence_model:
        rows = int(options.sequence_rows)
        Payloads.sequence_digits = _reference(
            digits[:64],
            lambda p: _read_digit(client, options.sequence_model, p, rows),
            lambda p, logits: _raise(_wrong_digit(p, logits)),
        )
    if options.translate_model:
        TranslateUser.pairs = _reference(
            date_pairs(),
            lambda pair: client.translate(pair[0], model=options.translate_model).text,
            lambda pair, text: _raise(None if text == pair[1] else ValueError(text)),
        )
    if options.read_model:
        ReadUser.numbers = _reference(
            number_scenes(32),
            lambda p: client.read(p.pixels, model=options.read_model),
            check_reading,
        )
    Payloads.digits, Payloads.scenes, Payloads.segment_scenes = digits, scenes, segment_scenes
    RestUser.digits = digits  # for loadtests/locustfile_http.py
    RestUser.classify_model = options.classify_model or "mnist"
    RestUser.infer_model = options.infer_model or "mnist"
    client.close()


class VisionUser(GrpcUser):
    """The task API: Classify, Detect, Segment."""

    wait_time = between(0, 0.01)

    def _weight(self, name: str) -> int:
        model = getattr(self.environment.parsed_options, f"{name}_model")
        return Payloads.weights.get(name, 1) if model else 0

    @task
    def predict(self) -> None:
        choices = {name: self._weight(name) for name in ("classify", "detect", "segment")}
        choices = {k: v for k, v in choices.items() if v > 0}
        if not choices:
            return
        name = random.choices(list(choices), weights=list(choices.values()))[0]
        options = self.environment.parsed_options
        if name == "classify":
            payload = random.choice(Payloads.digits)
            call = _calls.task("classify", payload.pixels, options.classify_model, "", {"top_k": 1})
            self.request(
                call,
                f"Classify {options.classify_model}",
                lambda result: checks.check_classification(payload, result),
            )
        elif name == "detect":
            payload = random.choice(Payloads.scenes)
            call = _calls.task("detect", payload.pixels, options.detect_model, "", {})
            self.request(
                call,
                f"Detect {options.detect_model}",
                lambda result: checks.check_detections(payload, result),
            )
        else:
            payload = random.choice(Payloads.segment_scenes)
            call = _calls.task(
                "segment",
                payload.pixels,
                options.segment_model,
                "",
                {"mask_encoding": _calls.mask_encoding(png=True)},
            )
            self.request(
                call,
                f"Segment {options.segment_model}",
                lambda result: checks.check_segmentation(payload, result),
            )


class TensorUser(GrpcUser):
    """The tensor API: ModelInfer with an MNIST digit as uint8 [1, 28, 28, 1]."""

    wait_time = between(0, 0.01)

    @task
    def infer(self) -> None:
        options = self.environment.parsed_options
        if not options.infer_model or not Payloads.weights.get("infer", 1):
            return
        payload = random.choice(Payloads.digits)
        call = _calls.infer(
            options.infer_model, {"image": payload.pixels[None, :, :, None]}, None, ""
        )
        self.request(
            call,
            f"ModelInfer {options.infer_model}",
            lambda outputs: checks.check_logits(payload, outputs["logits"]),
        )


class SequenceUser(GrpcUser):
    """A stateful model's sequence: one digit read a few rows a request, the server keeping the
    reader's state; each step reported, and the whole digit from its first row to its answer
    (checked against the digit's label)."""

    wait_time = between(0, 0.01)

    @task
    def read(self) -> None:
        options = self.environment.parsed_options
        if not options.sequence_model or not Payloads.sequence_digits:
            gevent.sleep(1)  # not asked for: idle
            return
        payload = random.choice(Payloads.sequence_digits)
        rows, model = int(options.sequence_rows), options.sequence_model
        sequence_id = random.getrandbits(63) or 1
        started = time.perf_counter()
        last: dict = {}
        for first in range(0, 28, rows):
            end = first + rows >= 28
            call = _calls.infer(
                model, {"rows": payload.pixels[None, first : first + rows]}, None, "",
                sequence=(sequence_id, first == 0, end),
            )  # fmt: skip
            if not self.request(call, f"Sequence step {model}", last.update):
                return
        self.environment.events.request.fire(
            request_type="sequence",
            name=f"Sequence {model} (a digit)",
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            exception=_wrong_digit(payload, last.get("logits")),
            context={},
        )


def _read_digit(client: Client, model: str, payload: Payload, rows: int) -> np.ndarray:
    with client.sequence(model) as reading:
        for first in range(0, 28, rows):
            rows_in = payload.pixels[None, first : first + rows]
            logits = reading.send({"rows": rows_in}, end=first + rows >= 28)["logits"]
    return logits


def _raise(error: Exception | None) -> None:
    if error is not None:
        raise error


def _wrong_digit(payload: Payload, logits) -> Exception | None:
    if payload.digits is None or logits is None:
        return None
    read = int(np.argmax(logits[0]))
    return (
        None
        if read == payload.digits[0]
        else ValueError(f"read {read}, expected {payload.digits[0]}")
    )
