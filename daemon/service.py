"""``facecluster run``: the long-running service that keeps the albums current.

Life of the process: take the state dir's lock, lower CPU and I/O priority, start the
watcher, tell the service manager it is ready, reconcile what changed while it was down,
then follow events. New photos are indexed in small batches and their faces joined to
known people at once, so a new photo of a known person reaches the album within seconds;
a full re-clustering runs after enough new faces, after a quiet spell, and on a schedule.
``labels.toml`` is live. SIGTERM/SIGINT stop between two small batches; SIGHUP re-reads
the configuration and labels.

READY=1 is sent *before* the first reconcile rather than after: on a large library the
first scan takes hours, and systemd would kill a ``Type=notify`` service that stays in
"activating" past ``TimeoutStartSec``. Progress is visible in STATUS= meanwhile.

``state_dir/service.json`` says what the service is doing, for ``facecluster status``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import platform
import signal
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import structlog

from daemon import lock, sdnotify
from daemon.config import Config, ConfigError, ConfigWatch, load_config
from daemon.fsutil import atomic_write, utc_now
from daemon.watcher import Change, RootBack, RootGone, Watcher, WatchEvent

if TYPE_CHECKING:
    from daemon.scan import Pipeline

log = structlog.get_logger(__name__)

STATUS_NAME = "service.json"
STATUS_EVERY = 5.0
"""Seconds between status-file writes while nothing changes."""
LABELS_POLL = 1.0
"""Seconds between checks of labels.toml's mtime."""
LOOP_WAIT = 0.5
"""Longest the main loop sleeps; bounds the reaction time to signals."""
ALBUM_BURST_INTERVAL = 5.0
"""During a burst, the album tree is rewritten at most this often (seconds)."""
PROGRESS_EVERY = 10.0
"""Seconds between info-level progress lines during a long indexing run."""
MAX_CONSECUTIVE_ERRORS = 5
"""After this many failed rounds in a row the service exits non-zero (and is restarted)."""


# -- the status file ---------------------------------------------------------------------


@dataclass
class Counters:
    """What the service did since it started."""

    indexed: int = 0
    unchanged: int = 0
    moved: int = 0
    copied: int = 0
    failed: int = 0
    removed: int = 0
    new_faces: int = 0
    assigned: int = 0
    reclusters: int = 0
    rescans: int = 0
    album_writes: int = 0
    errors: int = 0


@dataclass(frozen=True)
class ServiceStatus:
    """The content of ``state_dir/service.json``."""

    pid: int
    started_at: str
    updated_at: str
    phase: str
    """starting, reconciling, indexing, reclustering, writing-albums, idle, stopping, stopped."""
    message: str
    """The one-line STATUS= text, e.g. ``idle, 3412 photos, 57 people``."""
    queue_length: int
    last_recluster: str | None
    labels_error: str | None
    engine: str
    roots: dict[str, str] = field(default_factory=dict)
    """Watched root -> ``events``, ``polling`` or ``gone``."""
    counters: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """Plain JSON-ready form."""
        return asdict(self)


def write_service_status(state_dir: Path, status: ServiceStatus) -> None:
    """Replace ``service.json`` atomically, so a reader never sees half a file."""
    # No fsync: the file is rewritten every few seconds and only describes the present.
    data = json.dumps(status.as_dict(), indent=1) + "\n"
    atomic_write(state_dir / STATUS_NAME, data.encode("utf-8"), durable=False)


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists (possibly owned by another user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_service_status(state_dir: Path) -> ServiceStatus | None:
    """The running service's status, or None if none is running for ``state_dir``.

    None also when the file is missing or unreadable, or names a process that is gone
    (a killed service leaves its last status behind).
    """
    try:
        data = json.loads((state_dir / STATUS_NAME).read_text(encoding="utf-8"))
        known = {f.name for f in fields(ServiceStatus)}
        status = ServiceStatus(**{k: v for k, v in data.items() if k in known})
    except (OSError, ValueError, TypeError):
        return None
    if status.phase == "stopped" or not pid_alive(int(status.pid)):
        return None
    return status


# -- process priority --------------------------------------------------------------------

_IOPRIO_SET = {"x86_64": 251, "aarch64": 30, "armv7l": 314, "armv6l": 314, "i686": 289}
_IOPRIO_WHO_PROCESS = 1
_IOPRIO_CLASS_IDLE = 3


def lower_priority(nice: int) -> None:
    """Run at niceness ``nice`` (never raised back) and, on Linux, in the idle I/O class.

    Worker processes started afterwards inherit both. Failures are logged, not raised:
    the unit file sets ``Nice=`` and ``IOSchedulingClass=idle`` as well.
    """
    try:
        current = os.nice(0)
        if nice > current:
            os.nice(nice - current)
    except OSError as e:
        log.warning("nice_failed", error=str(e))
    nr = _IOPRIO_SET.get(platform.machine())
    if platform.system() != "Linux" or nr is None:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syscall(nr, _IOPRIO_WHO_PROCESS, 0, _IOPRIO_CLASS_IDLE << 13) != 0:
            log.warning("ioprio_failed", error=os.strerror(ctypes.get_errno()))
    except (OSError, AttributeError) as e:
        log.warning("ioprio_failed", error=str(e))


# -- the service -------------------------------------------------------------------------


class _Stop(Exception):
    """A stop signal arrived in the middle of a long step."""


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class Service:
    """The main loop of ``facecluster run`` (see the module docstring)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.started_at = utc_now()
        self.counters = Counters()
        self.phase = "starting"
        self.message = "starting"
        self.stop_requested = False
        self.reload_requested = False
        self.pipeline: Pipeline | None = None  # opened in run(): it starts worker processes
        self.watcher: Watcher | None = None
        self._labels_sig: tuple[int, int, int] | None = None
        self._config_watch = ConfigWatch(cfg.config_path)  # a changed config applies itself
        self._next_labels_check = 0.0
        self._watchdog_every = sdnotify.watchdog_interval()
        self._next_ping = 0.0
        self._next_status = 0.0
        self._pending_faces = 0
        self._recluster_wanted = False
        self._last_change = time.monotonic()
        self._last_recluster = time.monotonic()
        self._albums_dirty = False
        self._last_album_write = 0.0
        self._recluster_seconds = 0.0
        self._next_rescan = self._rescan_due_from(time.monotonic())
        self._rescan_wanted = False
        self._errors_in_row = 0

    @property
    def _pipe(self) -> Pipeline:
        assert self.pipeline is not None, "pipeline used before run() opened it"
        return self.pipeline

    # -- signals ------------------------------------------------------------------------

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        if not self.stop_requested:
            log.info("stop_requested", signal=signal.Signals(signum).name)
        self.stop_requested = True

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        self.reload_requested = True

    def _install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)

    def _check_stop(self) -> None:
        self._keepalive()
        if self.stop_requested:
            raise _Stop

    # -- status and keep-alive ----------------------------------------------------------

    def _keepalive(self) -> None:
        now = time.monotonic()
        if self._watchdog_every and now >= self._next_ping:
            sdnotify.watchdog_ping()
            self._next_ping = now + self._watchdog_every
        if now >= self._next_status:
            self._write_status()

    def _set_phase(self, phase: str, message: str | None = None) -> None:
        message = message or phase
        changed = (phase, message) != (self.phase, self.message)
        self.phase, self.message = phase, message
        if changed:
            sdnotify.status(message)
            self._write_status()

    def _write_status(self) -> None:
        self._next_status = time.monotonic() + STATUS_EVERY
        p = self.pipeline
        status = ServiceStatus(
            pid=os.getpid(),
            started_at=self.started_at,
            updated_at=utc_now(),
            phase=self.phase,
            message=self.message,
            queue_length=self.watcher.pending() if self.watcher else 0,
            last_recluster=p.store.get_meta("last_recluster") if p else None,
            labels_error=p.labels_error if p else None,
            engine=p.engine_id if p else "",
            roots={str(k): v for k, v in (self.watcher.modes if self.watcher else {}).items()},
            counters=asdict(self.counters),
        )
        try:
            write_service_status(self.cfg.state_dir, status)
        except OSError as e:
            log.warning("status_write_failed", error=str(e))

    def _idle(self) -> None:
        msg = "idle"
        if self.pipeline is not None:
            try:
                st = self._pipe.status()
            except Exception as e:  # noqa: BLE001 - a status line is not worth a failed round
                log.warning("status_query_failed", error=f"{type(e).__name__}: {e}")
            else:
                photos = sum(st.photos.values())
                msg = f"idle, {photos} photos, {st.people} people"
                if st.labels_error:
                    msg += ", labels.toml has an error"
        gone = self.watcher.gone_roots if self.watcher else ()
        if gone:
            msg += f", {len(gone)} folder(s) missing"
        self._set_phase("idle", msg)

    # -- the stages ---------------------------------------------------------------------

    def _batch_size(self) -> int:
        # Small enough that a stop request waits for a few photos only.
        return max(2, 2 * self.cfg.worker_count)

    def _index(self, paths: Sequence[Path], phase: str) -> list[int]:
        """Index ``paths`` in small batches; returns the new face ids."""
        new_ids: list[int] = []
        n = self._batch_size()
        next_log = time.monotonic() + PROGRESS_EVERY
        totals = {"indexed": 0, "failed": 0, "faces": 0}
        for start in range(0, len(paths), n):
            self._check_stop()
            if len(paths) > n:
                self._set_phase(phase, f"{phase} {start}/{len(paths)}")
            report = self._pipe.index(paths[start:start + n])
            c = self.counters
            c.indexed += report.indexed
            c.unchanged += report.skipped
            c.moved += report.moved
            c.copied += report.copied
            c.failed += report.failed
            c.new_faces += len(report.new_face_ids)
            new_ids += report.new_face_ids
            totals["indexed"] += report.indexed
            totals["failed"] += report.failed
            totals["faces"] += len(report.new_face_ids)
            done = min(start + n, len(paths))
            # One info line per PROGRESS_EVERY seconds, not per batch: the first scan of
            # a large library would otherwise log a line every few photos.
            if time.monotonic() >= next_log or (done == len(paths) and len(paths) > n):
                log.info("indexing_progress", done=done, total=len(paths), **totals)
                next_log = time.monotonic() + PROGRESS_EVERY
        return new_ids

    def _recluster(self) -> None:
        self._set_phase("reclustering", "re-clustering faces into people")
        started = time.monotonic()
        self._pipe.recluster()
        self._recluster_seconds = time.monotonic() - started
        self.counters.reclusters += 1
        self._pending_faces = 0
        self._recluster_wanted = False
        self._last_recluster = time.monotonic()
        self._write_albums()

    def _write_albums(self) -> None:
        self._set_phase("writing-albums", "writing albums")
        self._pipe.write_albums()
        self.counters.album_writes += 1
        self._albums_dirty = False
        self._last_album_write = time.monotonic()

    def _burst(self) -> bool:
        """Whether settled photos are already waiting behind the batch in hand."""
        w = self.watcher
        return w is not None and w.pending() - w.settling() > 0

    def _write_albums_soon(self) -> None:
        """Write albums now, or, in the middle of a burst, at most every few seconds.

        Rewriting a large album tree after every small batch would make a burst of
        thousands of photos spend its time on album passes; at idle a new photo still
        reaches its album at once.
        """
        if self._burst() and time.monotonic() - self._last_album_write < ALBUM_BURST_INTERVAL:
            self._albums_dirty = True
            return
        self._write_albums()

    def _reconcile(self) -> None:
        """Catch up with the folders: index what is new, forget what vanished."""
        self.counters.rescans += 1
        if self.watcher is not None:
            self.watcher.take_rescan_request()  # this scan covers what was dropped
        self._set_phase("reconciling", "looking for new and changed photos")
        found = self._pipe.discover()
        new_ids = self._index(found, "indexing")
        self._check_stop()
        removed = self._sync_missing()
        self.counters.removed += removed
        never = self._pipe.store.get_meta("last_recluster") is None
        if new_ids or removed or never or self._pending_faces or self._recluster_wanted:
            self._recluster()
        else:
            self._write_albums()
        self._next_rescan = self._rescan_due_from(time.monotonic())
        self._pipe.store.set_meta("last_scan", utc_now())  # `status`: not "never" after this
        log.info("reconciled", photos=len(found), new_faces=len(new_ids), removed=removed)

    def _sync_missing(self) -> int:
        """Forget vanished photos, unless a root the watcher calls gone still exists.

        That is an unmounted share's empty mount point: the pipeline, which only asks
        ``is_dir``, would take every photo under it for deleted.
        """
        if self.watcher is not None:
            hollow = [r for r in self.watcher.gone_roots if r.is_dir()]
            if hollow:
                log.warning("sync_missing_skipped", roots=[str(r) for r in hollow],
                            reason="unmounted share: its mount point is empty")
                return 0
        return self._pipe.sync_missing()

    def _rescan_due_from(self, now: float) -> float:
        every = self.cfg.daemon.rescan_interval
        return now + every if every > 0 else float("inf")

    def _handle(self, events: Iterable[WatchEvent]) -> None:
        """Apply one batch of watcher events to the store and the albums."""
        upserts: list[Path] = []
        removals: list[Path] = []
        folder_gone = False
        for e in events:
            if isinstance(e, RootGone):
                log.warning("folder_missing", root=str(e.path),
                            hint="its photos stay in the albums until it is back")
            elif isinstance(e, RootBack):
                log.info("folder_back", root=str(e.path))
                self._rescan_wanted = True
            elif isinstance(e, Change):
                if e.kind == "upsert":
                    upserts.append(e.path)
                elif e.kind == "move" and e.dest is not None:
                    upserts.append(e.dest)
                    removals.append(e.path)
                elif e.is_dir:
                    folder_gone = True
                else:
                    removals.append(e.path)
        if not (upserts or removals or folder_gone):
            return
        self._last_change = time.monotonic()
        # Index before removing: a photo moved away and back in (or across folders) is
        # then recognised by its content hash and keeps its faces and people.
        new_ids = self._index(upserts, "indexing") if upserts else []
        assert self.watcher is not None
        # Never forget photos of a root that is not there (unmounted share), nor a path
        # that exists again (deleted and re-created before we got to it).
        gone = [p for p in removals if self.watcher.root_present(p) and not os.path.lexists(p)]
        removed = self._pipe.remove(gone) if gone else 0
        if folder_gone:
            removed += self._sync_missing()
        self.counters.removed += removed
        assigned = self._pipe.assign_incremental(new_ids) if new_ids else 0
        self.counters.assigned += assigned
        self._pending_faces += len(new_ids)
        log.info("changes_applied", indexed=len(upserts), new_faces=len(new_ids),
                 assigned=assigned, removed=removed)
        if self._pending_faces >= max(1, self.cfg.daemon.recluster_after_faces):
            self._recluster()
        else:
            self._write_albums_soon()

    def _check_labels(self) -> None:
        now = time.monotonic()
        if now < self._next_labels_check:
            return
        self._next_labels_check = now + LABELS_POLL
        if self._config_watch.changed():
            self.reload_requested = True
        sig = _signature(self.cfg.labels_file)
        if sig == self._labels_sig:
            return
        self._labels_sig = sig
        error = self._pipe.reload_labels()
        if error:
            # The last good labels stay in force; the error is in the status until fixed.
            log.error("labels_kept", error=error)
            self._write_status()
            return
        log.info("labels_reloaded", file=str(self.cfg.labels_file))
        self._write_albums()
        # Names and "not this person" marks also steer clustering; catch up when quiet.
        self._recluster_wanted = True

    def _maybe_recluster(self) -> None:
        now = time.monotonic()
        d = self.cfg.daemon
        # A large library takes minutes to re-cluster; waiting at least twice that long
        # for quiet keeps a trickle of photos from keeping the service re-clustering.
        quiet = now - self._last_change >= max(d.recluster_quiet_seconds,
                                               2 * self._recluster_seconds)
        scheduled = d.recluster_interval > 0 and now - self._last_recluster >= d.recluster_interval
        if ((self._pending_faces or self._recluster_wanted) and quiet) or scheduled:
            self._recluster()

    def _reload_config(self) -> None:
        self.reload_requested = False
        if self.cfg.config_path is None:
            log.warning("config_reload_skipped", reason="the service runs on defaults, no file")
            return
        try:
            new = load_config(self.cfg.config_path)
        except ConfigError as e:
            log.error("config_invalid_kept_old", error=str(e))
            return
        if new.state_dir != self.cfg.state_dir:
            log.error("config_reload_refused", reason="state_dir changed; restart the service")
            return
        from daemon import log as logsetup

        logsetup.configure(new.log_level)
        log.info("config_reloaded", file=str(new.config_path))
        self._close()
        self.cfg = new
        self._open()
        self._labels_sig = None  # re-read labels too
        self._rescan_wanted = True

    def _open(self) -> None:
        from daemon.scan import Pipeline

        self.pipeline = Pipeline(self.cfg, create=True)
        self.watcher = Watcher(self.cfg)
        self.watcher.start()
        self._labels_sig = _signature(self.cfg.labels_file)  # Pipeline just read them

    def _close(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None
        if self.pipeline is not None:
            self.pipeline.close()
            self.pipeline = None

    # -- the loop -----------------------------------------------------------------------

    def _pause(self, seconds: float) -> None:
        """Sleep, but wake up for a stop signal and keep the watchdog fed."""
        end = time.monotonic() + seconds
        while not self.stop_requested and time.monotonic() < end:
            time.sleep(min(LOOP_WAIT, max(0.0, end - time.monotonic())))
            self._keepalive()

    def _step(self) -> None:
        """One round of the main loop."""
        if self.reload_requested:
            self._reload_config()
        self._check_labels()
        if self._rescan_wanted or (self.watcher and self.watcher.rescan_requested) or (
            time.monotonic() >= self._next_rescan
        ):
            self._rescan_wanted = True  # stays set if the reconcile fails: try again
            self._reconcile()
            self._rescan_wanted = False
            self._idle()
        assert self.watcher is not None
        events = self.watcher.poll(LOOP_WAIT, limit=self._batch_size() * 4)
        if events:
            try:
                self._handle(events)
            except Exception:
                # These events are consumed; a rescan (cheap for unchanged photos)
                # makes sure none of them is lost for good.
                self._rescan_wanted = True
                raise
            self._idle()
        if self._albums_dirty and not self._burst():
            self._write_albums()
        self._maybe_recluster()
        if self.phase != "idle":
            self._idle()

    def run(self) -> int:
        """Run until a stop signal; returns the process exit code."""
        self._install_signals()
        code = 0
        web = None
        try:
            self._open()
            if self.cfg.web.enabled:  # the naming page, served from a thread of its own
                from daemon.web.server import WebThread

                web = WebThread(self.cfg)
                web.start()
            self._write_status()
            sdnotify.ready("starting: reconciling with the folders")
            log.info("service_started", pid=os.getpid(), engine=self._pipe.engine_id,
                     roots=[str(r) for r in self.cfg.watch])
            self._rescan_wanted = True
            while not self.stop_requested:
                try:
                    self._step()
                    self._errors_in_row = 0
                except _Stop:
                    break
                except Exception as e:  # noqa: BLE001 - one bad round must not end the service
                    self.counters.errors += 1
                    self._errors_in_row += 1
                    log.exception("service_round_failed", error=str(e), in_row=self._errors_in_row)
                    if self._errors_in_row >= MAX_CONSECUTIVE_ERRORS:
                        log.error("service_giving_up", hint="the service manager restarts it")
                        code = 1
                        break
                    self._pause(min(30.0, 2.0 ** self._errors_in_row))
                self._keepalive()
        finally:
            sdnotify.stopping()
            if web is not None:
                web.stop()
            self.phase, self.message = "stopping", "stopping"
            with contextlib.suppress(Exception):
                self._write_status()
            self._close()
            self.phase = self.message = "stopped"
            with contextlib.suppress(Exception):
                self._write_status()
            log.info("service_stopped", code=code)
        return code


def run(cfg: Config) -> int:
    """Entry point of ``facecluster run``. Raises ``lock.AlreadyRunning`` if one runs."""
    with lock.hold(cfg.state_dir):
        lower_priority(cfg.daemon.nice)
        return Service(cfg).run()
