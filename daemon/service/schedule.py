"""The service's timing rules: when to re-cluster, rescan, write albums, re-read labels and config.

- Re-cluster at once after ``recluster_after_faces`` new faces; otherwise once photos
  have stopped arriving for ``recluster_quiet_seconds``, and at least twice as long as
  the last re-clustering took (a trickle of photos must not keep a large library
  re-clustering non-stop); and every ``recluster_interval`` regardless.
- Rescan the folders every ``rescan_interval``, and whenever asked (a root came back,
  events were lost, a failed round); a rescan that fails stays due.
- Write the albums after each change, but during a burst at most every
  :data:`ALBUM_BURST_INTERVAL` seconds; a put-off write happens once the burst is over.
- Look at labels.toml's mtime every :data:`LABELS_POLL` seconds, and at the config
  file's every :data:`CONFIG_POLL` seconds (a changed config applies without a SIGHUP).

:class:`Schedule` takes its clock as an argument, so the rules are tested with a fake one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from daemon.config import DaemonConfig

LABELS_POLL = 1.0
"""Seconds between checks of labels.toml's mtime."""
CONFIG_POLL = 1.0
"""Seconds between checks of the config file's mtime."""
ALBUM_BURST_INTERVAL = 5.0
"""During a burst, the album tree is rewritten at most this often (seconds)."""


class _Every:
    """A check done at most once every ``seconds``: due at once, then not again until
    that many seconds passed (by the schedule's clock)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._next = float("-inf")

    def due(self, now: float) -> bool:
        if now < self._next:
            return False
        self._next = now + self.seconds
        return True


class Schedule:
    """Decides when the service's periodic and deferred work is due (see module doc)."""

    def __init__(self, rules: DaemonConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.rules = rules
        self._clock = clock
        now = clock()
        self.pending_faces = 0
        """New faces since the last re-clustering."""
        self.recluster_wanted = False
        """Something other than new faces (labels) asks for a re-clustering when quiet."""
        self._last_change = now
        self._last_recluster = now
        self._recluster_seconds = 0.0
        self.albums_dirty = False
        """A write of the albums was put off during a burst."""
        self._last_album_write = float("-inf")
        self.rescan_wanted = False
        self._next_rescan = self._rescan_due_from(now)
        self._labels_check = _Every(LABELS_POLL)
        self._config_check = _Every(CONFIG_POLL)

    def now(self) -> float:
        """The schedule's clock."""
        return self._clock()

    # -- re-clustering ------------------------------------------------------------------

    def photos_changed(self) -> None:
        """Photos were added, changed or removed just now (the quiet spell restarts)."""
        self._last_change = self._clock()

    def faces_added(self, count: int) -> bool:
        """Count new faces; True when enough are waiting to re-cluster right away."""
        self.pending_faces += count
        return self.pending_faces >= max(1, self.rules.recluster_after_faces)

    def want_recluster(self) -> None:
        """Re-cluster at the next quiet spell even without new faces."""
        self.recluster_wanted = True

    def recluster_due(self) -> bool:
        """Whether to re-cluster now: work waits and it is quiet, or the interval passed."""
        now = self._clock()
        d = self.rules
        quiet = now - self._last_change >= max(d.recluster_quiet_seconds,
                                               2 * self._recluster_seconds)
        scheduled = d.recluster_interval > 0 and now - self._last_recluster >= d.recluster_interval
        return ((self.pending_faces > 0 or self.recluster_wanted) and quiet) or scheduled

    def recluster_after_rescan(self, *, changed: bool, never_clustered: bool) -> bool:
        """Whether a rescan ends with a re-clustering (else just an album write)."""
        return changed or never_clustered or self.pending_faces > 0 or self.recluster_wanted

    def reclustered(self, started: float) -> None:
        """A re-clustering begun at clock time ``started`` has just finished."""
        now = self._clock()
        self._recluster_seconds = now - started
        self._last_recluster = now
        self.pending_faces = 0
        self.recluster_wanted = False

    # -- albums -------------------------------------------------------------------------

    def put_off_albums(self, in_burst: bool) -> bool:
        """Whether to put off writing the albums: in a burst, they were written lately.

        Rewriting a large album tree after every small batch would make a burst of
        thousands of photos spend its time on album passes; at rest a new photo still
        reaches its album at once. A put-off write is remembered (:attr:`albums_dirty`).
        """
        if in_burst and self._clock() - self._last_album_write < ALBUM_BURST_INTERVAL:
            self.albums_dirty = True
            return True
        return False

    def albums_overdue(self, in_burst: bool) -> bool:
        """Whether a put-off album write is due now (the burst is over)."""
        return self.albums_dirty and not in_burst

    def albums_written(self) -> None:
        """The albums were just written."""
        self.albums_dirty = False
        self._last_album_write = self._clock()

    # -- rescans ------------------------------------------------------------------------

    def _rescan_due_from(self, now: float) -> float:
        every = self.rules.rescan_interval
        return now + every if every > 0 else float("inf")

    def want_rescan(self) -> None:
        """Rescan the folders at the next chance."""
        self.rescan_wanted = True

    def rescan_due(self) -> bool:
        """Whether to rescan now; once due it stays due until :meth:`rescanned`."""
        if self._clock() >= self._next_rescan:
            self.rescan_wanted = True
        return self.rescan_wanted

    def rescanned(self) -> None:
        """A rescan has just completed; the next one is an interval away."""
        self.rescan_wanted = False
        self._next_rescan = self._rescan_due_from(self._clock())

    # -- labels -------------------------------------------------------------------------

    def labels_check_due(self) -> bool:
        """Whether to look at labels.toml now (at most every :data:`LABELS_POLL` s)."""
        return self._labels_check.due(self._clock())

    # -- the config file ----------------------------------------------------------------

    def config_check_due(self) -> bool:
        """Whether to look at the config file now (at most every :data:`CONFIG_POLL` s)."""
        return self._config_check.due(self._clock())
