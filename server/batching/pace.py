"""How fast a model version gets through its queue, so a request that cannot be served in time is
refused when it arrives rather than after waiting.

The pace is learned from the batches the version runs: a moving average of a batch's compute
time and of its size (so large batches, the ones that matter under load, weigh most). Each
instance's first batch is left out: it pays one-off costs (memory arenas, kernels chosen) that
later batches do not. Until a batch has been measured nothing is refused."""

from __future__ import annotations

from dataclasses import dataclass

SMOOTHING = 0.2
"""Weight of the newest batch in the moving averages."""


@dataclass
class Pace:
    instances: int
    _batch_ns: float = 0.0
    _batch_items: float = 0.0
    _seen: int = 0

    def record(self, items: int, compute_ns: int) -> None:
        """One batch ran: `items` in `compute_ns` on one instance."""
        self._seen += 1
        if self._seen <= self.instances:
            return  # each instance's first batch is slower than any later one
        if self._batch_items == 0.0:
            self._batch_ns, self._batch_items = float(compute_ns), float(items)
            return
        self._batch_ns += SMOOTHING * (compute_ns - self._batch_ns)
        self._batch_items += SMOOTHING * (items - self._batch_items)

    @property
    def known(self) -> bool:
        return self._batch_items > 0.0

    def wait_ns(self, items: int) -> float:
        """About how long `items` take to get through the instances; 0 while unknown."""
        if not self.known:
            return 0.0
        return items * self._batch_ns / self._batch_items / self.instances
