"""Turn file-system events under the watched folders into a short queue of changes.

watchdog reports raw events from its own threads; this module filters them (photos
only, nothing :func:`daemon.library.photos.is_ignored` rejects), holds created/modified files
back until they have *settled* (size and mtime unchanged for ``settle_seconds``, or a
shorter confirmation after a close-after-write), de-duplicates by path, and bounds the
memory used: past ``queue_limit`` paths, new events are dropped and a full rescan is
requested instead. Each watched root is also checked periodically; a root that vanishes
(share unmounted, folder renamed away) is reported as :class:`RootGone` so that the
service does not mistake its photos for deleted ones, and as :class:`RootBack` on return.

The service reads it with :meth:`Watcher.poll` from its main loop.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import structlog
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from daemon.config import Config
from daemon.library.photos import is_ignored, is_photo
from daemon.library.roots import MountPoints, root_present, root_watchable

log = structlog.get_logger(__name__)

ChangeKind = Literal["upsert", "delete", "move"]

# Only what we act on: without a filter, inotify would also report every open/read,
# including the indexer's own reads of each photo.
EVENT_FILTER = [
    FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileDeletedEvent, FileMovedEvent,
    DirCreatedEvent, DirDeletedEvent, DirMovedEvent,
]
CLOSE_SETTLE_SECONDS = 0.5
"""After a close-after-write, size and mtime must still be unchanged this long (capped at
``settle_seconds``): a writer that re-opens the file per chunk must not be read between
chunks, but one that wrote and closed should not wait the full settle time."""
ROOT_CHECK_SECONDS = 2.0
INOTIFY_HINT = (
    "the inotify watch limit is reached; raise it with "
    "'sysctl fs.inotify.max_user_watches=524288' (persist in /etc/sysctl.d/) "
    "or set daemon.polling = true; polling this folder meanwhile"
)


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


def _under(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


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
            for p in [p for p in self._settling if _under(p, path)]:
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
        settling = [p for p in self._settling if _under(p, root)]
        for p in settling:
            del self._settling[p]
        ready = [p for p, c in self._ready.items()
                 if _under(p, root) or (c.dest is not None and _under(c.dest, root))]
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


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher) -> None:
        self._watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            self._watcher._on_event(event)
        except Exception:  # noqa: BLE001 - an odd event must not kill watchdog's thread
            log.exception("watch_event_failed", event=repr(event))


class _OverflowSpy(logging.Handler):
    """Sets the rescan flag when watchdog logs that the kernel's inotify queue overflowed.

    watchdog rebuilds its watches but emits no event for the lost ones, so its warning
    is the only signal that we missed changes.
    """

    def __init__(self, on_overflow: Callable[[], None]) -> None:
        super().__init__(logging.WARNING)
        self._on_overflow = on_overflow

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self._on_overflow()


_WATCHDOG_LOGGERS = ("watchdog.observers.inotify_c", "watchdog.observers.inotify")


class Watcher:
    """Watches ``cfg.watch`` recursively and yields settled changes via :meth:`poll`.

    One observer per root, so one root can fall back to polling (inotify limit) or be
    dropped and re-watched (unmounted share) without disturbing the others.
    """

    def __init__(
        self,
        cfg: Config,
        *,
        root_check_seconds: float = ROOT_CHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        mounts: MountPoints | None = None,
    ) -> None:
        """``mounts`` is shared with whoever else decides about the roots (the pipeline)."""
        self.cfg = cfg
        self.roots: tuple[Path, ...] = tuple(Path(os.path.abspath(r)) for r in cfg.watch)
        self._clock = clock
        self._root_check_seconds = root_check_seconds
        self._cond = threading.Condition()
        self._queue = ChangeQueue(cfg.daemon.settle_seconds, cfg.daemon.queue_limit, clock=clock)
        self._observers: dict[Path, BaseObserver] = {}
        self._modes: dict[Path, str] = {}
        self._gone: set[Path] = set()
        self._mounts = mounts if mounts is not None else MountPoints()
        self._events_lost = False
        self._root_events: list[WatchEvent] = []
        self._next_root_check = 0.0
        self._handler = _Handler(self)
        self._spy = _OverflowSpy(self.request_rescan)
        self._started = False

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start watching every root that exists; missing ones are reported as gone."""
        for name in _WATCHDOG_LOGGERS:
            logging.getLogger(name).addHandler(self._spy)
        self._started = True
        for root in self.roots:
            if self._available(root):
                self._watch_root(root)
            else:
                log.warning("watch_root_missing", root=str(root))
                self._gone.add(root)
                self._modes[root] = "gone"
                self._root_events.append(RootGone(root))
        self._next_root_check = self._clock() + self._root_check_seconds

    def stop(self) -> None:
        """Stop all observers (joins their threads)."""
        for name in _WATCHDOG_LOGGERS:
            logging.getLogger(name).removeHandler(self._spy)
        for root in list(self._observers):
            self._unwatch_root(root)
        self._started = False

    def __enter__(self) -> Watcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start_observer(self, root: Path, polling: bool) -> BaseObserver:
        observer: BaseObserver = (
            PollingObserver(timeout=self.cfg.daemon.poll_interval) if polling else Observer()
        )
        observer.daemon = True
        observer.start()
        try:
            observer.schedule(self._handler, str(root), recursive=True, event_filter=EVENT_FILTER)
        except BaseException:
            observer.stop()
            raise
        return observer

    def _watch_root(self, root: Path) -> None:
        polling = self.cfg.daemon.polling
        try:
            observer = self._start_observer(root, polling)
        except OSError as e:
            if polling or e.errno not in (errno.ENOSPC, errno.EMFILE):
                raise
            log.error("inotify_limit", root=str(root), error=str(e), hint=INOTIFY_HINT)
            polling = True
            observer = self._start_observer(root, polling)
        self._observers[root] = observer
        self._modes[root] = "polling" if polling else "events"
        log.info("watching", root=str(root), mode=self._modes[root])

    def _unwatch_root(self, root: Path) -> None:
        observer = self._observers.pop(root, None)
        if observer is None:
            return
        observer.stop()
        if observer is not threading.current_thread():
            observer.join(timeout=5)

    # -- state --------------------------------------------------------------------------

    @property
    def modes(self) -> dict[Path, str]:
        """Per root: ``events`` (inotify/FSEvents), ``polling`` or ``gone``."""
        return dict(self._modes)

    @property
    def gone_roots(self) -> frozenset[Path]:
        """Roots currently missing."""
        return frozenset(self._gone)

    def pending(self) -> int:
        """Paths held (settling plus ready)."""
        with self._cond:
            return len(self._queue)

    def settling(self) -> int:
        """Paths still waiting for their size and mtime to hold still."""
        with self._cond:
            return self._queue.settling

    @property
    def rescan_requested(self) -> bool:
        """True once events were lost: our queue dropped some, or the kernel's overflowed."""
        with self._cond:
            return self._events_lost or self._queue.overflowed

    def request_rescan(self) -> None:
        """Ask for a full rescan (the kernel lost events)."""
        with self._cond:
            first = not (self._events_lost or self._queue.overflowed)
            self._events_lost = True
        if first:
            log.warning("watch_events_lost", hint="a full rescan will catch up")

    def take_rescan_request(self) -> bool:
        """Return and clear the rescan request. Call right before starting the rescan."""
        with self._cond:
            requested = self._events_lost or self._queue.overflowed
            self._events_lost = False
            self._queue.clear_overflow()
            return requested

    def root_of(self, path: Path) -> Path | None:
        """The watched root containing ``path``."""
        return next((r for r in self.roots if _under(path, r)), None)

    def root_present(self, path: Path) -> bool:
        """True if the root holding ``path`` is really there right now (checked, not
        cached; see :func:`daemon.library.roots.root_present`)."""
        root = self.root_of(path)
        return root is not None and root_present(root, self._mounts)

    def _available(self, root: Path) -> bool:
        """Whether ``root`` can be watched (a share unmounted from it cannot)."""
        return root_watchable(root, self._mounts)

    # -- events from watchdog's threads -----------------------------------------------

    def _on_event(self, event: FileSystemEvent) -> None:
        src = Path(os.fsdecode(event.src_path))
        dest = Path(os.fsdecode(event.dest_path)) if event.dest_path else None
        root = self.root_of(src)
        if root is None or root in self._gone:
            return
        kind = event.event_type
        if event.is_directory:
            if kind == "deleted" and src in self.roots:
                self._next_root_check = 0.0  # look now, not in two seconds
            elif kind == "deleted" and not is_ignored(src, self.cfg):
                self._apply(lambda q: q.delete(src, is_dir=True))
            # Created and moved folders arrive with one event per file inside.
            return
        # is_photo looks at the name only, so it also works for paths already deleted.
        if kind in ("created", "modified", "closed"):
            if is_photo(src, self.cfg):
                self._touch(src, closed=kind == "closed")
        elif kind == "deleted":
            if is_photo(src, self.cfg):
                self._apply(lambda q: q.delete(src))
        elif kind == "moved" and dest is not None:
            src_ok, dest_ok = is_photo(src, self.cfg), is_photo(dest, self.cfg)
            if src_ok and dest_ok:
                self._apply(lambda q: q.move(src, dest))
            elif src_ok:
                self._apply(lambda q: q.delete(src))
            elif dest_ok:
                # e.g. rsync's ".name.jpg.XyZ" renamed into place: complete on rename.
                self._touch(dest, closed=True)

    def _touch(self, path: Path, *, closed: bool) -> None:
        sig = file_signature(path)
        if sig is not None:
            self._apply(lambda q: q.touch(path, sig, closed=closed))

    def _apply(self, op: Callable[[ChangeQueue], None]) -> None:
        with self._cond:
            op(self._queue)
            self._cond.notify_all()

    # -- the consumer side --------------------------------------------------------------

    def _check_roots(self, *, force: bool = False) -> None:
        now = self._clock()
        if now < self._next_root_check and not force:
            return
        self._next_root_check = now + self._root_check_seconds
        for root in self.roots:
            present = self._available(root)
            if not present and root not in self._gone:
                self._gone.add(root)
                self._modes[root] = "gone"
                self._unwatch_root(root)
                with self._cond:
                    dropped = self._queue.drop_under(root)
                log.warning("watch_root_gone", root=str(root), dropped=dropped,
                            hint="its photos are kept until it comes back")
                self._root_events.append(RootGone(root))
            elif present and root in self._gone:
                try:
                    self._watch_root(root)
                except OSError as e:
                    log.error("watch_root_failed", root=str(root), error=str(e))
                    continue
                self._gone.discard(root)
                log.info("watch_root_back", root=str(root))
                self._root_events.append(RootBack(root))

    def poll(self, timeout: float, limit: int | None = None) -> list[WatchEvent]:
        """Wait up to ``timeout`` seconds for events; return them (possibly none).

        Root events come first, then at most ``limit`` settled changes in arrival order.
        """
        deadline = self._clock() + timeout
        while True:
            if self._started:
                # A root renamed away keeps its inotify watches, which then report the
                # moved tree's deletions under the old path: look at the roots right
                # before handing out any delete, so such deletes are dropped instead.
                with self._cond:
                    deletes = self._queue.has_ready_deletes()
                self._check_roots(force=deletes)
            with self._cond:
                self._queue.release_settled()
                events: list[WatchEvent] = self._root_events
                self._root_events = []
                events += self._queue.take(limit)
                if events:
                    return events
                now = self._clock()
                if now >= deadline:
                    return []
                wake = min(deadline, self._next_root_check if self._started else deadline)
                due = self._queue.next_due()
                if due is not None:
                    wake = min(wake, due)
                self._cond.wait(max(0.01, min(wake - now, 0.5)))

