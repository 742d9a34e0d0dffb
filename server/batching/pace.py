"""How fast a model version gets through its queue, so a request that cannot be served in time is
refused when it arrives rather than after waiting.

The pace is learned from the batches the version runs: a moving average of a batch's compute
time and of its size (so large batches, the ones that matter under load, weigh most). Each
instance's first batch is left out: it pays one-off costs (memory arenas, kernels chosen) that
later batches do not. Until a batch has been measured nothing is refused, nor after the model
has been idle for STALE_S: a pace learned under other load (a burst that shared the cores with
its own clients) would otherwise refuse the next calls for as long as the model stays idle."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

SMOOTHING = 0.2
"""Weight of the newest batch in the moving averages."""
SMOOTHING_FASTER = 0.5
"""Its weight when it ran faster than the average: a pace learned while the cores were shared
(clients on the same machine, a burst now over) refuses calls wrongly until it falls, while one
too fast only admits a little more for a few batches."""
STALE_S = 10.0
"""A pace with no batch for this long is learned anew from the next one."""


@dataclass
class Pace:
    instances: int
    _batch_ns: float = 0.0
    _batch_items: float = 0.0
    _seen: int = 0
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    _last_s: float = 0.0

    def record(self, items: int, compute_ns: int) -> None:
        """One batch ran: `items` in `compute_ns` on one instance."""
        self._seen += 1
        if self._seen <= self.instances:
            return  # each instance's first batch is slower than any later one
        now, stale = self.clock(), not self.known
        self._last_s = now
        if stale:
            self._batch_ns, self._batch_items = float(compute_ns), float(items)
            return
        faster = compute_ns * self._batch_items < self._batch_ns * items
        weight = SMOOTHING_FASTER if faster else SMOOTHING
        self._batch_ns += weight * (compute_ns - self._batch_ns)
        self._batch_items += weight * (items - self._batch_items)

    @property
    def known(self) -> bool:
        return self._batch_items > 0.0 and self.clock() - self._last_s < STALE_S

    def run_ns(self, items: int) -> float:
        """About how long one instance takes to run a batch of `items`; 0 while unknown."""
        if not self.known:
            return 0.0
        return items * self._batch_ns / self._batch_items

    def wait_ns(self, items: int) -> float:
        """About how long `items` take to get through the instances; 0 while unknown."""
        if not self.known:
            return 0.0
        return items * self._batch_ns / self._batch_items / self.instances
