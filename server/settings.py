"""Server settings: one typed place, filled from the command line or DEEPSERVE_* variables."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MIB = 1024 * 1024


@dataclass(frozen=True)
class ServerSettings:
    model_repository: Path = Path("models")
    """Folder in Triton's layout: <model>/config.pbtxt and <model>/<version>/model.onnx."""

    host: str = "0.0.0.0"
    """Address the gRPC server binds to."""

    port: int = 8001
    """gRPC port (Triton's default). 0 picks a free port and logs it."""

    metrics_port: int = 8002
    """Prometheus /metrics HTTP port (Triton's default); 0 turns metrics off."""

    models: tuple[str, ...] = ()
    """Models to load at start; empty means every model in the repository."""

    device: str = "auto"
    """`auto` uses CUDA / TensorRT when installed and a GPU answers, `cpu` forces the CPU, `cuda`
    fails a model's load when CUDA cannot be used."""

    intra_op_threads: int = 0
    """ONNX Runtime threads per session for one operator; 0 lets ONNX Runtime decide. A model's
    config parameter `intra_op_thread_count` overrides it."""

    default_max_batch_size: int = 32
    """max_batch_size given to a model that has no config.pbtxt and whose graph batches."""

    default_max_queue_size: int = 1024
    """Requests that may wait per model and priority level when the config sets no
    max_queue_size: past it the server answers RESOURCE_EXHAUSTED, so memory stays bounded."""

    max_message_bytes: int = 64 * MIB
    """Largest gRPC message accepted or sent."""

    strict_readiness: bool = True
    """ServerReady only when every model that should be loaded is READY (Triton's default)."""

    grace_seconds: float = 10.0
    """On SIGTERM, how long in-flight requests may take to finish before the server stops."""

    server_name: str = "deepserve"
    """Name reported by ServerMetadata."""

    extra_grpc_options: tuple[tuple[str, int], ...] = field(default_factory=tuple)
    """Further grpc channel arguments for the server."""
