"""GPU utilisation and memory while a benchmark point runs, sampled from NVML on a thread."""

from __future__ import annotations

import threading
from typing import Any


class GpuSampler:
    """`with GpuSampler() as sampler: ...` then `sampler.summary()`: mean and peak utilisation
    (percent) and peak memory used (MiB) of GPU 0 over the block; None without NVML."""

    def __init__(self, interval_s: float = 0.1, gpu: int = 0) -> None:
        self.interval_s = interval_s
        self.samples: list[tuple[int, int]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml: Any = pynvml
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(gpu)
        except Exception:  # no driver, no nvidia-ml-py: nothing to sample
            self._nvml = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            utilization = self._nvml.nvmlDeviceGetUtilizationRates(self._handle)
            memory = self._nvml.nvmlDeviceGetMemoryInfo(self._handle)
            self.samples.append((int(utilization.gpu), int(memory.used) // 2**20))

    def __enter__(self) -> GpuSampler:
        if self._nvml is not None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def summary(self) -> dict[str, float] | None:
        if not self.samples:
            return None
        utilizations = [u for u, _ in self.samples]
        return {
            "gpu_util_mean_pct": sum(utilizations) / len(utilizations),
            "gpu_util_max_pct": float(max(utilizations)),
            "gpu_memory_max_mib": float(max(m for _, m in self.samples)),
        }
