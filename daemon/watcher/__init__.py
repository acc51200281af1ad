"""Turn file-system events under the watched folders into a short queue of changes.

watchdog reports raw events from its own threads; this module filters them (photos
only, nothing :func:`daemon.library.photos.is_ignored` rejects), holds created/modified files
back until they have *settled* (size and mtime unchanged for ``settle_seconds``, or a
shorter confirmation after a close-after-write), de-duplicates by path, and bounds the
memory used: past ``queue_limit`` paths, new events are dropped and a full rescan is
requested instead. Each watched root is also checked periodically; a root that vanishes
(share unmounted, folder renamed away) is reported as :class:`RootGone` so that the
service does not mistake its photos for deleted ones, and as :class:`RootBack` on return.

The service reads it with :meth:`Watcher.poll` from its main loop; the queue itself,
settling and de-duplication, is :mod:`daemon.watcher.changes`.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

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
from daemon.library.photos import is_ignored, is_photo, is_under
from daemon.library.roots import MountPoints, root_present, root_watchable
from daemon.watcher.changes import (
    Change,
    ChangeQueue,
    RootBack,
    RootGone,
    WatchEvent,
    file_signature,
)

log = structlog.get_logger(__name__)

# Only what we act on: without a filter, inotify would also report every open/read,
# including the indexer's own reads of each photo.
EVENT_FILTER = [
    FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileDeletedEvent, FileMovedEvent,
    DirCreatedEvent, DirDeletedEvent, DirMovedEvent,
]
ROOT_CHECK_SECONDS = 2.0
INOTIFY_HINT = (
    "the inotify watch limit is reached; raise it with "
    "'sysctl fs.inotify.max_user_watches=524288' (persist in /etc/sysctl.d/) "
    "or set daemon.polling = true; polling this folder meanwhile"
)


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
        return next((r for r in self.roots if is_under(path, r)), None)

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


__all__ = ["Change", "ChangeQueue", "RootBack", "RootGone", "WatchEvent", "Watcher"]
