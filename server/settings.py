"""Server settings: one typed place. The `serve` command line and the DEEPSERVE_* environment
variables are generated from these fields (server/cli.py), so a setting is added here once.

Each field's `help` is what `deepserve serve --help` prints. Fields marked `env_only` are secrets
or lists that do not belong on a command line (it is visible to every user of the host).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
MODEL_CONTROL_MODES = ("none", "explicit", "poll")
DEFAULT_IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")


def default_engine_cache() -> Path:
    """A per-user cache folder ($XDG_CACHE_HOME or ~/.cache) for TensorRT engines."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "deepserve" / "tensorrt"


def setting(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    choices: tuple[str, ...] | None = None,
    env_only: bool = False,
) -> Any:
    """A settings field with what the command line needs to offer it."""
    metadata = {"help": help, "flag": flag, "choices": choices, "env_only": env_only}
    if isinstance(default, tuple):
        return field(default_factory=lambda: default, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class ServerSettings:
    # ---- what is served ------------------------------------------------------------------
    model_repository: Path = setting(
        Path("models"), "folder with <model>/config.pbtxt and <model>/<version>/model.onnx"
    )
    models: tuple[str, ...] = setting(
        (),
        "load only this model at start (repeatable; env: comma-separated); default: all",
        flag="--model",
    )
    model_control_mode: str = setting(
        "none",
        "none: the repository is loaded at start and load/unload calls are refused; explicit: "
        "RepositoryModelLoad/Unload work for admin callers; poll: the server watches the "
        "repository and (re)loads changed models without dropping requests",
        choices=MODEL_CONTROL_MODES,
    )
    repository_poll_seconds: float = setting(
        15.0, "with --model-control-mode poll: seconds between looks at the repository"
    )
    device: str = setting(
        "auto",
        "auto: CUDA/TensorRT when installed and a GPU answers, else CPU; cuda: fail a model's "
        "load when CUDA cannot be used",
        choices=("auto", "cpu", "cuda"),
    )
    engine_cache: Path = setting(
        default_engine_cache(),
        "folder of TensorRT engines and timing caches, keyed by model file, ONNX Runtime, "
        "TensorRT and GPU (a second start with the same ones builds nothing)",
    )
    intra_op_threads: int = setting(
        0,
        "ONNX Runtime intra-op threads per session (0: its default); a model's config "
        "parameter intra_op_thread_count overrides it",
    )
    intra_op_spinning: bool = setting(
        False,
        "let ONNX Runtime's intra-op threads spin-wait between runs (its own default): a "
        "little less latency on idle cores, but they burn the cores the server's threads need",
    )
    default_max_batch_size: int = setting(
        32, "max_batch_size for batching models that have no config.pbtxt"
    )
    strict_readiness: bool = setting(
        True, "ready only when every model to load is ready (else: when any is)"
    )

    # ---- network and security ------------------------------------------------------------
    host: str = setting(
        "127.0.0.1",
        "address the gRPC server binds; 0.0.0.0 for every interface (then tokens are required "
        "unless --allow-unauthenticated)",
    )
    port: int = setting(8001, "gRPC port; 0 picks a free one (logged)")
    http_port: int = setting(
        8000, "KServe v2 REST (and the Vision API over HTTP) port, as Triton's; 0 turns it off"
    )
    http_host: str = setting("", "address the HTTP port binds (empty: the same as --host)")
    http_allowed_hosts: tuple[str, ...] = setting(
        (),
        "host names HTTP requests may name in Host besides addresses, localhost, this machine's "
        "name, the bound name and the TLS certificate's names (repeatable; env: comma-separated; "
        "'.example.com': it and every name under it; '*': any), so a DNS-rebinding page cannot "
        "reach the API",
        flag="--http-allowed-host",
    )
    http_max_connections: int = setting(
        1000, "open HTTP connections; past it a new one is answered 503 and closed"
    )
    http_max_header_kb: int = setting(
        64, "largest HTTP request line and headers, in KiB; past it 431 and the connection closes"
    )
    http_header_timeout_s: float = setting(
        10.0, "time a client has to send a request's line and headers; past it 408 and close"
    )
    metrics_host: str = setting(
        "127.0.0.1",
        "address the Prometheus /metrics port binds; it has no authentication, so it stays on "
        "this host unless set (the container images set 0.0.0.0: a container's port is reached "
        "only where it is published)",
    )
    metrics_port: int = setting(8002, "Prometheus /metrics HTTP port; 0 turns metrics off")
    tls_cert: Path | None = setting(None, "PEM certificate chain: serve gRPC over TLS")
    tls_key: Path | None = setting(None, "PEM private key of --tls-cert")
    tls_client_ca: Path | None = setting(
        None, "PEM CA bundle: require client certificates signed by it (mutual TLS)"
    )
    token_file: Path | None = setting(
        None,
        "file of bearer tokens, one per line as '<scopes> <token>' (scopes: inference, admin, "
        "or both comma-separated); re-read when it changes",
    )
    inference_token: str = setting("", "a bearer token with the inference scope", env_only=True)
    admin_token: str = setting(
        "", "a bearer token with the admin and inference scopes", env_only=True
    )
    allow_unauthenticated: bool = setting(
        False,
        "allow binding a non-loopback address with no tokens configured (anyone who can reach "
        "the port may then infer, and read statistics)",
    )
    reflection: bool = setting(
        True, "gRPC server reflection (grpcurl); needs the inference scope when tokens are set"
    )

    # ---- limits ----------------------------------------------------------------------------
    max_message_mb: int = setting(64, "largest gRPC message received or sent, in MiB")
    max_inflight_mb: int = setting(
        1024,
        "request bytes all gRPC calls in flight may hold together, after decompression, in MiB; "
        "past it a call is refused with RESOURCE_EXHAUSTED (a call alone always fits)",
    )
    max_inflight_mb_per_connection: int = setting(
        256, "the same, for the calls of one connection, in MiB"
    )
    grpc_max_streams_per_connection: int = setting(
        256,
        "gRPC calls one connection may have open at once (HTTP/2 MAX_CONCURRENT_STREAMS); a "
        "client waits for a free one, and calls past it that a client sends anyway are refused "
        "with UNAVAILABLE (REFUSED_STREAM: never started, safe to retry)",
    )
    memory_return_mb: int = setting(
        8,
        "when the process has grown by more than this since it last did, it gives the memory "
        "its allocator holds freed back to the system (glibc's malloc_trim; checked every "
        "second), so a storm of large or compressed requests does not leave it larger; 0: never",
    )
    max_concurrent_rpcs: int = setting(
        4096, "gRPC calls handled at once; past it RESOURCE_EXHAUSTED before the message is read"
    )
    max_json_mb: int = setting(
        8,
        "largest JSON document an HTTP request may carry, in MiB (parsing holds the server's "
        "interpreter; larger tensors go as binary data)",
    )
    max_image_pixels: int = setting(
        40_000_000,
        "largest image a Vision call may send, in pixels (width x height), checked "
        "from the image header before decoding",
    )
    max_request_image_mb: int = setting(
        256,
        "decoded size budget of all images of one Vision call, width x height x channels, in MiB",
    )
    image_formats: tuple[str, ...] = setting(
        DEFAULT_IMAGE_FORMATS,
        "image formats the Vision API decodes, by Pillow's name (repeatable; env: comma-separated)",
        flag="--image-format",
    )
    max_image_scans: int = setting(
        64, "most scans a progressive JPEG may have (each is a pass over the whole image)"
    )
    max_image_strips: int = setting(1 << 14, "most strips or tiles a TIFF image may have")
    max_image_decode_ms: float = setting(
        1000.0,
        "CPU time one image may take to decode; past it the decode stops and the call gets "
        "INVALID_ARGUMENT",
    )
    decode_threads: int = setting(
        0, "threads that decode the Vision API's images; 0: one per core, at least two"
    )
    heavy_decode_ms: float = setting(
        100.0,
        "requests whose images are estimated (from their headers) to take longer than this to "
        "decode are decoded in worker processes of their own (half as many as cores, at a low "
        "priority), so they never delay small ones",
    )
    shared_memory: str = setting(
        "auto",
        "system shared memory (clients on this host register /dev/shm regions and name them "
        "instead of sending tensors): auto: on when tokens are configured (registering then "
        "needs the admin scope), off without them, as any local user could otherwise map this "
        "server's user's shared memory; on: always; off: never",
        choices=("auto", "on", "off"),
    )
    response_cache_mb: float = setting(
        0.0,
        "bytes of answers kept for requests seen before, for models whose config says "
        "response_cache { enable: true } (least recently used go first; in each front end of "
        "a split server); 0: none",
    )
    decode_worker_cpus: str = setting(
        "",
        "CPUs the costly images' decode workers run on, e.g. '3' or '2-3' (then one worker a "
        "CPU); empty: any. Kept off the cores that serve, a client sending costly images "
        "slows no one else",
    )
    heavy_decodes_waiting: int = setting(
        32, "costly requests that may wait for those threads; past it RESOURCE_EXHAUSTED"
    )
    decodes_waiting: int = setting(
        256,
        "Vision requests that may wait for a decode thread; past it RESOURCE_EXHAUSTED at once "
        "(under overload the excess is refused before its images cost anything)",
    )
    max_request_elements: int = setting(
        1 << 25, "most tensor elements one inference request may carry, over all its inputs"
    )
    max_bytes_element_kb: int = setting(4096, "longest element of a BYTES input tensor, in KiB")
    max_item_activation_mb: int = setting(
        128,
        "most memory the intermediate tensors of one item of a request may take, estimated "
        "from the model's graph (a free height and width otherwise turn 32 MB of pixels into "
        "1.5 GB); 0: no bound",
    )
    max_instances: int = setting(
        16, "most ONNX Runtime sessions (instance_group counts) one model version may ask for"
    )
    max_intra_op_threads: int = setting(
        max(os.cpu_count() or 1, 1) * 2, "most intra-op threads a model config may ask for"
    )
    max_batch_size_limit: int = setting(4096, "largest max_batch_size a model config may set")
    default_max_queue_size: int = setting(
        1024,
        "requests that may wait per model and priority level when its config sets no "
        "max_queue_size; past it the server answers RESOURCE_EXHAUSTED",
        flag="--max-queue-size",
    )
    max_queue_wait_ms: float = setting(
        2000.0,
        "longest a request is expected to wait in a model's queue, from the pace of its recent "
        "batches; one that would wait longer (or past its deadline, or past its queue timeout) "
        "is refused with RESOURCE_EXHAUSTED when it arrives; 0: bound by count alone",
    )

    # ---- process ---------------------------------------------------------------------------
    frontends: int = setting(
        0,
        "0: one process does everything; N: N front-end processes share the ports and do the "
        "transport work (parsing, checking, image decoding) for one engine process that owns "
        "the models and batches (docs/operations.md)",
    )
    grace_seconds: float = setting(
        10.0, "on SIGTERM: how long accepted requests may take to finish before the server exits"
    )
    event_loop: str = setting(
        "auto",
        "auto: uvloop when installed (less CPU per request), else asyncio",
        choices=("auto", "uvloop", "asyncio"),
    )
    log_level: str = setting("INFO", "log verbosity", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    log_format: str = setting(
        "text", "text, or json: one object a line with stable field names", choices=("text", "json")
    )
    access_log_ratio: float = setting(
        0.0, "share of requests written to the access log (logger deepserve.access); 0: none"
    )
    slow_request_ms: float = setting(
        0.0,
        "log requests slower than this (logger deepserve.slow) with their queue and compute "
        "times; 0: never",
    )
    tracing: bool = setting(
        False, "OpenTelemetry traces, exported as the standard OTEL_* variables configure"
    )
    trace_sample_ratio: float = setting(
        1.0, "share of new traces sampled (a caller's sampled trace is always continued)"
    )
    server_name: str = setting("deepserve", "name reported by ServerMetadata")
    extra_grpc_options: tuple[tuple[str, int], ...] = field(default_factory=tuple)
    """Further grpc channel arguments for the server (not on the command line)."""

    @property
    def max_message_bytes(self) -> int:
        return self.max_message_mb * MIB

    @property
    def max_json_bytes(self) -> int:
        return self.max_json_mb * MIB

    @property
    def response_budget_bytes(self) -> int:
        """What a response may carry: the message limit less room for its other fields."""
        return self.max_message_bytes - 64 * 1024

    @property
    def max_request_image_bytes(self) -> int:
        return self.max_request_image_mb * MIB

    @property
    def max_bytes_element(self) -> int:
        return self.max_bytes_element_kb * 1024

    @property
    def binds_loopback_only(self) -> bool:
        hosts = [self.host]
        if self.http_port:
            hosts.append(self.http_host or self.host)
        return all(host in LOOPBACK_HOSTS for host in hosts)
