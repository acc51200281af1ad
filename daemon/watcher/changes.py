"""The queue between watchdog's events and the service: changes held back until their
files have settled (size and mtime unchanged for ``settle_seconds``, or a shorter
confirmation after a close-after-write), de-duplicated by path, and bounded: past
``queue_limit`` paths new events are dropped and a full rescan is asked for instead.

What the service is given: :class:`Change` for a photo, :class:`RootGone` and
:class:`RootBack` for a watched folder (see :mod:`daemon.watcher`).
"""

from __future__ import annotations

import os
import stat
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import structlog

from daemon.library.photos import is_under

log = structlog.get_logger(__name__)

ChangeKind = Literal["upsert", "delete", "move"]

CLOSE_SETTLE_SECONDS = 0.5
"""After a close-after-write, size and mtime must still be unchanged this long (capped at
``settle_seconds``): a writer that re-opens the file per chunk must not be read between
chunks, but one that wrote and closed should not wait the full settle time."""


@dataclass(frozen=True)
class Change:
    """One change to act on.

    ``upsert``: ``path`` is a settled photo to (re)index. ``delete``: ``path`` is gone;
    with ``is_dir`` a whole folder went away (moved out of the watched tree or deleted)
    and every photo under it must be checked. ``move``: a complete photo was renamed
    from ``path`` to ``dest``; index ``dest`` (its content hash finds the old record)
    and then remove ``path``.
    """

    kind: ChangeKind
    path: Path
    dest: Path | None = None
    is_dir: bool = False


@dataclass(frozen=True)
class RootGone:
    """A watched root no longer exists (unmounted share, renamed folder)."""

    path: Path


@dataclass(frozen=True)
class RootBack:
    """A watched root that was gone exists again; its folders need a rescan."""

    path: Path


WatchEvent = Change | RootGone | RootBack
Signature = tuple[int, int]
"""(size, mtime_ns) of a file: unchanged for the settle time means it is complete."""


def file_signature(path: Path) -> Signature | None:
    """(size, mtime_ns) of a regular file, or None if it is missing or not a file."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return st.st_size, st.st_mtime_ns


@dataclass
class _Settling:
    signature: Signature
    since: float
    closed: bool


class ChangeQueue:
    """Settle tracker plus de-duplicated, bounded queue of ready changes.

    Not thread-safe by itself; :class:`Watcher` guards it with a lock. ``clock`` and
    ``stat`` are injectable so the settling logic is testable without real time.
    """

    def __init__(
        self,
        settle_seconds: float,
        limit: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        stat_file: Callable[[Path], Signature | None] = file_signature,
    ) -> None:
        self.settle_seconds = settle_seconds
        self.close_settle = min(settle_seconds, CLOSE_SETTLE_SECONDS)
        self.limit = max(1, limit)
        self.overflowed = False
        """Paths were dropped for want of room since the last :meth:`clear_overflow`."""
        self.dropped = 0
        self._clock = clock
        self._stat = stat_file
        self._settling: dict[Path, _Settling] = {}
        self._ready: OrderedDict[Path, Change] = OrderedDict()

    def __len__(self) -> int:
        return len(self._settling) + len(self._ready)

    @property
    def settling(self) -> int:
        """How many files are waiting to settle."""
        return len(self._settling)

    def clear_overflow(self) -> None:
        """A rescan is starting, which covers what was dropped; warn again on the next drop."""
        self.overflowed = False

    def _room_for(self, path: Path) -> bool:
        if path in self._settling or path in self._ready or len(self) < self.limit:
            return True
        if not self.overflowed:
            log.warning(
                "watch_queue_overflow", limit=self.limit,
                hint="events dropped; a full rescan will catch up",
            )
        self.overflowed = True
        self.dropped += 1
        return False

    def touch(self, path: Path, signature: Signature, *, closed: bool = False) -> None:
        """A photo was created, written or closed after writing; (re)start settling."""
        if not self._room_for(path):
            return
        ready = self._ready.get(path)
        if ready is not None and ready.kind == "upsert":
            # Written again before we got to it: it must settle again.
            del self._ready[path]
        now = self._clock()
        entry = self._settling.get(path)
        if entry is None or entry.signature != signature:
            self._settling[path] = _Settling(signature, now, closed)
        elif closed:
            entry.closed = True

    def delete(self, path: Path, *, is_dir: bool = False) -> None:
        """A photo (or a folder, ``is_dir``) disappeared."""
        if not self._room_for(path):
            return
        if is_dir:
            for p in [p for p in self._settling if is_under(p, path)]:
                del self._settling[p]
        self._settling.pop(path, None)
        earlier = self._ready.pop(path, None)
        if earlier is not None and earlier.kind == "move":
            # Renamed then deleted: what is gone is the original path.
            self._ready[earlier.path] = Change("delete", earlier.path)
        self._ready[path] = Change("delete", path, is_dir=is_dir)

    def move(self, src: Path, dest: Path) -> None:
        """A photo was renamed from ``src`` to ``dest`` (both watched, both photos)."""
        if not self._room_for(dest):
            return
        settling = self._settling.pop(src, None)
        if settling is not None:
            # Still being written under its old name: keep waiting under the new one,
            # and drop whatever the old name may have been indexed as.
            self._settling[dest] = settling
            self._ready.pop(src, None)
            self._ready[src] = Change("delete", src)
            return
        earlier = self._ready.pop(src, None)
        origin = src
        if earlier is not None and earlier.kind == "move":
            origin = earlier.path  # a→src→dest is a→dest (and a→src→a is just a)
        self._settling.pop(dest, None)
        self._ready.pop(dest, None)
        if origin == dest:
            self._ready[dest] = Change("upsert", dest)
        else:
            self._ready[dest] = Change("move", origin, dest)

    def drop_under(self, root: Path) -> int:
        """Forget every pending change under ``root`` (it is gone; a rescan follows its return)."""
        settling = [p for p in self._settling if is_under(p, root)]
        for p in settling:
            del self._settling[p]
        ready = [p for p, c in self._ready.items()
                 if is_under(p, root) or (c.dest is not None and is_under(c.dest, root))]
        for p in ready:
            del self._ready[p]
        return len(settling) + len(ready)

    def release_settled(self) -> None:
        """Move every file whose size and mtime held still long enough to the ready queue."""
        now = self._clock()
        for path, entry in list(self._settling.items()):
            wait = self.close_settle if entry.closed else self.settle_seconds
            if now - entry.since < wait:
                continue
            current = self._stat(path)
            if current is None:
                del self._settling[path]  # gone again; its delete event handles the rest
            elif current != entry.signature:
                self._settling[path] = _Settling(current, now, False)
            else:
                del self._settling[path]
                self._ready[path] = Change("upsert", path)

    def has_ready_deletes(self) -> bool:
        """True if a delete (or the removal half of a move) is waiting to be taken."""
        return any(c.kind != "upsert" for c in self._ready.values())

    def next_due(self) -> float | None:
        """Clock time at which the next settling file may be released, if any."""
        due = None
        for entry in self._settling.values():
            t = entry.since + (self.close_settle if entry.closed else self.settle_seconds)
            if due is None or t < due:
                due = t
        return due

    def take(self, limit: int | None = None) -> list[Change]:
        """Remove and return up to ``limit`` ready changes, oldest first."""
        out: list[Change] = []
        while self._ready and (limit is None or len(out) < limit):
            out.append(self._ready.popitem(last=False)[1])
        return out
