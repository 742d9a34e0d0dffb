"""A Locust user that speaks deepserve's gRPC APIs and reports every call as a Locust request:
its RPC name, response time, response size, and the exception when the call failed or its
answer was wrong."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from locust import User

from deepserve import _calls
from deepserve.errors import from_rpc_error

MIB = 1024 * 1024


class GrpcUser(User):
    """Base class: `self.request(call, name, check)` sends one SDK call description."""

    abstract = True

    def on_start(self) -> None:
        target = self.host or "localhost:8001"
        options = [
            ("grpc.max_receive_message_length", 64 * MIB),
            ("grpc.max_send_message_length", 64 * MIB),
        ]
        # The same variables as the deepserve command line: DEEPSERVE_TOKEN, DEEPSERVE_TLS_CA.
        token = os.environ.get("DEEPSERVE_TOKEN")
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        ca = os.environ.get("DEEPSERVE_TLS_CA")
        if ca:
            credentials = grpc.ssl_channel_credentials(Path(ca).read_bytes())
            self._channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._stubs = _calls.stubs(self._channel)

    def on_stop(self) -> None:
        self._channel.close()

    def request(self, call: _calls.Call, name: str, check: Callable[[Any], None]) -> bool:
        """Sends it, reports it; whether it succeeded."""
        started = time.perf_counter()
        size = 0
        exception: Exception | None = None
        try:
            rpc = getattr(self._stubs[call.service], call.method)
            response = rpc(call.request, timeout=30, metadata=self._metadata + call.metadata)
            size = response.ByteSize()
            check(call.parse(response))
        except grpc.RpcError as error:
            exception = from_rpc_error(error)
        except Exception as error:  # a wrong answer, reported as this request's failure
            exception = error
        self.environment.events.request.fire(
            request_type="grpc",
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=size,
            exception=exception,
            context={},
        )
        return exception is None
