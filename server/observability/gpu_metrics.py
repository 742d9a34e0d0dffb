"""GPU telemetry from NVML (nvidia-ml-py), read at scrape time: utilisation, memory used and
total, and power per GPU. On a host without an NVIDIA driver there is nothing to report, and
no series appear."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)


def _nvml() -> Any:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # no driver, no GPU: NVMLError of many kinds
        log.debug("NVML not available: %s", exc)
        return None
    return pynvml


class GpuCollector(Collector):
    def __init__(self, nvml: Any) -> None:
        self._nvml = nvml
        self._count = nvml.nvmlDeviceGetCount()

    @classmethod
    def if_available(cls) -> GpuCollector | None:
        nvml = _nvml()
        if nvml is None:
            return None
        collector = cls(nvml)
        log.info("GPU metrics from NVML: %d GPU(s)", collector._count)
        return collector

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["gpu", "name"]
        utilization = GaugeMetricFamily(
            "deepserve_gpu_utilization_ratio", "Share of time a kernel ran, 0..1", labels=labels
        )
        used = GaugeMetricFamily(
            "deepserve_gpu_memory_used_bytes", "GPU memory used", labels=labels
        )
        total = GaugeMetricFamily(
            "deepserve_gpu_memory_total_bytes", "GPU memory in all", labels=labels
        )
        power = GaugeMetricFamily("deepserve_gpu_power_watts", "Power drawn now", labels=labels)
        nvml = self._nvml
        for index in range(self._count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                name = nvml.nvmlDeviceGetName(handle)
                name = name.decode() if isinstance(name, bytes) else name
                key = [str(index), name]
                rates = nvml.nvmlDeviceGetUtilizationRates(handle)
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                utilization.add_metric(key, rates.gpu / 100)
                used.add_metric(key, memory.used)
                total.add_metric(key, memory.total)
                power.add_metric(key, nvml.nvmlDeviceGetPowerUsage(handle) / 1000)
            except Exception as exc:  # a GPU that fell off the bus must not break the scrape
                log.warning("NVML: GPU %d not read: %s", index, exc)
        yield from (utilization, used, total, power)
