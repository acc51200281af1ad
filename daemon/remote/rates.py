"""Photos per second of each cluster worker, for ``status``: no Dask here.

Only a photo that ended (faces or a failure) counts, once, for the worker that ended it;
a photo handed back to be sent again (bytes needed, a refused engine) counts for no one,
so a worker that cannot see the photos does not look busy. Old completions are dropped
as new ones arrive, so the memory held stays bounded however long nobody asks.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class WorkerRates:
    """Completions per worker over the last ``window`` seconds, and totals."""

    window: float = 60.0
    _recent: dict[str, deque[tuple[float, int]]] = field(default_factory=dict)
    _total: dict[str, int] = field(default_factory=dict)

    def record(self, worker: str, photos: int, now: float) -> None:
        """``photos`` ended on ``worker`` at ``now`` (nothing to record for 0)."""
        if photos <= 0:
            return
        recent = self._recent.setdefault(worker, deque())
        recent.append((now, photos))
        while recent and recent[0][0] < now - self.window:
            recent.popleft()
        self._total[worker] = self._total.get(worker, 0) + photos

    def rate(self, worker: str, now: float) -> float:
        """Photos/s over the window; 0 until two completions are there to measure by.

        Counted from the first completion in the window: the photos ended after it, over
        the time since it (its own photos took time before the window saw them).
        """
        recent = [(t, n) for t, n in self._recent.get(worker, ()) if t >= now - self.window]
        if len(recent) < 2:
            return 0.0
        return sum(n for _, n in recent[1:]) / max(now - recent[0][0], 1e-3)

    def total(self, worker: str) -> int:
        """Photos this worker ended since the service started."""
        return self._total.get(worker, 0)
