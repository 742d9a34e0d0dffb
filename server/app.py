"""Assembles the gRPC server: v2 inference service, health, reflection; runs until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import time

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from deepserve.v1 import vision_pb2 as vpb
from deepserve.v1 import vision_pb2_grpc as vpb_grpc

from .core.auth import Authenticator, ConfigurationError, check_exposure
from .core.certificates import check_certificate_names
from .core.control import Control
from .core.dataplane import DataPlane, RequestLimits
from .core.response_cache import ResponseCache
from .core.shared_memory import SharedMemory, shared_memory_on
from .core.vision import Vision
from .drain import drain
from .grpc.admission import MIB, RequestBytes
from .grpc.inference import InferenceServicer
from .grpc.security import TokenInterceptor, server_credentials
from .grpc.vision import VisionServicer
from .http.calls import CallWrapper
from .http.server import EmbeddedServer, http_server
from .http.v2 import V2Routes, build_app
from .http.vision import VisionRoutes
from .http.web_page import web_routes
from .observability import tracing
from .observability.observe import Observer
from .runtime import sessions as runtime
from .runtime.memory import MemoryReturner
from .settings import ServerSettings
from .split.hosts import EngineLink, model_host

log = logging.getLogger(__name__)

__all__ = ["ConfigurationError", "Server", "serve"]

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Server:
    """One serving process. `await start()`, then `await wait()`; `await stop()` drains."""

    def __init__(self, settings: ServerSettings, engine: EngineLink | None = None) -> None:
        """`engine`: a split server's front end's link to the engine that runs the models."""
        self.settings = settings
        self._executor = runtime.inference_executor()
        self.auth = Authenticator(settings)
        check_exposure(settings, self.auth)
        self._credentials = server_credentials(settings)
        if settings.tls_cert is not None:
            check_certificate_names(settings, settings.tls_cert)
        self.host = model_host(settings, self._executor, self._health_changed, engine)
        self.models = self.host.catalog
        cache_bytes = int(settings.response_cache_mb * MIB)
        memory = (
            SharedMemory() if shared_memory_on(settings.shared_memory, self.auth.enabled) else None
        )
        self.dataplane = DataPlane(
            self.models,
            RequestLimits.from_settings(settings),
            ResponseCache(cache_bytes) if cache_bytes > 0 else None,
            memory,
            self.host.regions(memory) if memory is not None else None,
        )
        self.control = Control(self.models, settings.server_name)
        self.observer = Observer(settings)
        self.vision = Vision(self.dataplane, self.models, settings)
        self.health = health.aio.HealthServicer()
        self._grpc: grpc.aio.Server | None = None
        # Request bytes the gRPC port holds at once; the memory returner reads it too.
        self._request_bytes = RequestBytes(
            settings.max_inflight_mb * MIB, settings.max_inflight_mb_per_connection * MIB
        )
        self._health_sync: asyncio.Task[None] | None = None
        self._http: EmbeddedServer | None = None
        self._http_task: asyncio.Task[None] | None = None
        self._memory_task: asyncio.Task[None] | None = None
        self.http_port = 0
        self.port = settings.port

    def _health_changed(self) -> None:
        # Called from the manager on the loop; health updates are coroutines.
        loop = asyncio.get_running_loop()
        self._health_sync = loop.create_task(self._sync_health())

    async def _sync_health(self) -> None:
        """Health services: "" and "ready" follow ServerReady (readiness probes), "live" is
        SERVING while the process serves at all (liveness probes), and one per model."""
        ready = SERVING if self.models.server_ready else NOT_SERVING
        await self.health.set("live", SERVING)
        for service in (
            "",
            "ready",
            pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
        ):
            await self.health.set(service, ready)
        for row in self.models.index():
            ready = self.models.is_ready(row.name)
            await self.health.set(row.name, SERVING if ready else NOT_SERVING)

    async def start(self) -> None:
        await self.host.open()
        limit = self.settings.max_message_bytes
        options = [
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            # Calls a connection holds are capped where HTTP/2 can say so: a flood on one
            # connection is refused by gRPC's core at once, before it reaches this process's
            # event loop, instead of waiting there and being cancelled.
            ("grpc.max_concurrent_streams", self.settings.grpc_max_streams_per_connection),
            ("grpc.http.overload_protection", 0),
            *self.settings.extra_grpc_options,
        ]
        interceptors = [TokenInterceptor(self.auth)] if self.auth.enabled else []
        server = grpc.aio.server(
            options=options,
            interceptors=interceptors,
            maximum_concurrent_rpcs=self.settings.max_concurrent_rpcs or None,
        )
        held = self._request_bytes
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(
            InferenceServicer(self.dataplane, self.control, self.observer, held),
            server,
        )
        vpb_grpc.add_VisionServicer_to_server(
            VisionServicer(self.vision, self.observer, held), server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        if self.settings.reflection:
            reflection.enable_server_reflection(
                [
                    pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
                    vpb.DESCRIPTOR.services_by_name["Vision"].full_name,
                    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                    reflection.SERVICE_NAME,
                ],
                server,
            )
        address = f"{self.settings.host}:{self.settings.port}"
        if self._credentials is not None:
            self.port = server.add_secure_port(address, self._credentials)
        else:
            self.port = server.add_insecure_port(address)
        if self.port == 0:
            raise RuntimeError(f"cannot bind gRPC port {address}")
        await self._sync_health()
        await server.start()
        self._grpc = server
        log.info(
            "deepserve listening on %s:%d (%s; model control %s; repository %s)",
            self.settings.host,
            self.port,
            self._protection(),
            self.settings.model_control_mode,
            self.settings.model_repository,
        )
        if not self.auth.enabled and not self.settings.binds_loopback_only:
            log.warning("serving %s without authentication", self.settings.host)
        if self.settings.http_port:
            await self._start_http()
        self.host.start_background()
        request_bytes = self._request_bytes
        returner = MemoryReturner(
            self.settings.memory_return_mb * MIB, held=lambda: request_bytes.held
        )
        self._memory_task = asyncio.create_task(returner.run())

    async def _start_http(self) -> None:
        calls = CallWrapper(self.observer, self.auth)
        routes = V2Routes(self.dataplane, self.control, self.settings, self.observer, calls)
        vision = VisionRoutes(self.vision, calls, self.settings.max_message_bytes)
        app = build_app(routes, [*vision.routes(), *web_routes()])
        self._http = http_server(app, self.settings)
        host = self.settings.http_host or self.settings.host
        shared = self.host.http_sockets(host, self.settings.http_port)
        self._http_task = asyncio.create_task(self._http.serve(sockets=shared))
        while not self._http.started:
            if self._http_task.done():
                raise RuntimeError(
                    f"cannot serve HTTP on port {self.settings.http_port}: "
                    f"{self._http_task.exception() or 'uvicorn stopped'}"
                )
            await asyncio.sleep(0.01)
        self.http_port = self._http.port
        log.info(
            "KServe v2 REST and the Vision API on %s:%d (%s)",
            self.settings.http_host or self.settings.host,
            self.http_port,
            self._protection(),
        )

    def _protection(self) -> str:
        """How a port is protected: both ports share the TLS files and the tokens."""
        if self._credentials is None:
            transport = "plaintext"
        elif self.settings.tls_client_ca:
            transport = "TLS with client certificates"
        else:
            transport = "TLS"
        access = "bearer tokens required" if self.auth.enabled else "no authentication"
        return f"{transport}, {access}"

    async def wait(self) -> None:
        assert self._grpc is not None
        await self._grpc.wait_for_termination()

    async def stop(self) -> None:
        """The drain: health NOT_SERVING at once, then `drain` (every call already accepted
        answered for up to grace_seconds, later ones refused, the listeners closed with no
        call cut), then the models stop."""
        if self._grpc is None:
            return
        grace = self.settings.grace_seconds
        accepted = self.observer.in_flight
        log.info("stopping: draining %d accepted call(s) for up to %.0f s", accepted, grace)
        started = time.monotonic()
        self.observer.draining = True
        await self.health.enter_graceful_shutdown()
        self.host.stop_background()
        if self._memory_task is not None:
            self._memory_task.cancel()
        await drain(self.observer, self._grpc, self._http, self._http_task, started + grace)
        await asyncio.sleep(0.05)  # the handlers cut by the stop finish (and are counted)
        cut = self.observer.cancelled_while_draining
        self.host.close()
        self.vision.close()
        if self.dataplane.shared_memory is not None:
            self.dataplane.shared_memory.close()  # every region's mapping released
        self._executor.shutdown(wait=False, cancel_futures=True)
        log.info(
            "drained in %.2f s: %s; stopped",
            time.monotonic() - started,
            f"{cut} call(s) ended CANCELLED (their clients left, or the grace period ended)"
            if cut
            else "every accepted call answered",
        )


async def serve(settings: ServerSettings, engine: EngineLink | None = None) -> None:
    """Run a server until SIGTERM or SIGINT, then drain and stop."""
    if settings.tracing:
        tracing.configure(sample_ratio=settings.trace_sample_ratio)
    server = Server(settings, engine)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    waiter = asyncio.create_task(server.wait())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    await server.stop()
    waiter.cancel()
    stopper.cancel()
    tracing.shutdown()  # flush the spans still buffered
