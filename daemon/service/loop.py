"""``facecluster run``: the long-running service's main loop, which keeps the albums current.

Life of the process: take the state dir's lock, lower CPU and I/O priority, start the
watcher, tell the service manager it is ready, rescan the folders for what changed while
it was down, then follow events. New photos are indexed in small batches and their faces
joined to known people at once, so a new photo of a known person reaches the album within
seconds; a full re-clustering runs after enough new faces, after a quiet spell, and on a
schedule (:mod:`daemon.service.schedule`). ``labels.toml`` is live, and so is the config file: a
change to it applies as a SIGHUP would. SIGTERM/SIGINT stop between two small batches;
SIGHUP re-reads the configuration and labels.

READY=1 is sent *before* the first rescan rather than after: on a large library the
first scan takes hours, and systemd would kill a ``Type=notify`` service that stays in
"activating" past ``TimeoutStartSec``. Progress is visible in STATUS= meanwhile, and in
``state_dir/service.json`` (:mod:`daemon.service.status`).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import structlog

from daemon.config import Config, ConfigError, reload_config
from daemon.library.roots import MountPoints
from daemon.service import lock, sdnotify
from daemon.service.filewatch import FileWatch
from daemon.service.page import restart_web, start_web
from daemon.service.priority import lower_priority
from daemon.service.schedule import Schedule
from daemon.service.status import StatusReporter, Surroundings, idle_message
from daemon.service.work import work_from
from daemon.stages.reports import IndexReport
from daemon.watcher import Watcher, WatchEvent

if TYPE_CHECKING:
    from daemon.remote.indexer import ClusterIndexer
    from daemon.stages.pipeline import Pipeline
    from daemon.web.server import WebThread

log = structlog.get_logger(__name__)

LOOP_WAIT = 0.5
"""Longest the main loop sleeps; bounds the reaction time to signals."""
PROGRESS_EVERY = 10.0
"""Seconds between info-level progress lines during a long indexing run."""
MAX_CONSECUTIVE_ERRORS = 5
"""After this many failed rounds in a row the service exits non-zero (and is restarted)."""


class _Stop(Exception):
    """A stop signal arrived in the middle of a long step."""


def surroundings(pipeline: Pipeline | None, watcher: Watcher | None) -> Surroundings:
    """What the status file says of the service around the library (either may be closed)."""
    p, w = pipeline, watcher
    return Surroundings(
        queue_length=w.pending() if w else 0,
        last_recluster=p.last_recluster() if p else None,
        labels_error=p.labels_error if p else None,
        engine=p.engine_id if p else "",
        roots={str(k): v for k, v in (w.modes if w else {}).items()},
        indexing=p.indexing() if p else {},
    )


def _cluster(cfg: Config) -> ClusterIndexer | None:
    """With ``[cluster]``: connected (or serving) from the start, for workers to join."""
    if not cfg.cluster.scheduler:
        return None
    from daemon.remote.indexer import ClusterIndexer

    return ClusterIndexer(cfg).start()


class SignalRequests:
    """What signals ask of the loop: SIGTERM/SIGINT to stop, SIGHUP to reload."""

    def __init__(self) -> None:
        self.stop = False
        self.reload = False

    def install(self) -> None:
        """Route the signals here (main thread only)."""
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        if not self.stop:
            log.info("stop_requested", signal=signal.Signals(signum).name)
        self.stop = True

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        self.reload = True


class Service:
    """The main loop of ``facecluster run`` (see the module docstring)."""

    def __init__(self, cfg: Config, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.requests = SignalRequests()
        self._clock = clock
        # Both opened in run(): the pipeline starts worker processes.
        self._pipeline: Pipeline | None = None
        self._watcher: Watcher | None = None
        self.schedule = Schedule(cfg.daemon, clock)
        self.status = StatusReporter(
            cfg.state_dir, self._surroundings,
            watchdog_every=sdnotify.watchdog_interval(), clock=clock,
        )
        self._labels_watch = FileWatch(cfg.labels_file, seen_now=False)
        # A changed config applies itself: both files, so a config.local.toml created
        # while the service runs is noticed too.
        self._config_watch = FileWatch(cfg.config_files or cfg.config_path)
        self._web: WebThread | None = None
        self._errors_in_row = 0

    @property
    def pipeline(self) -> Pipeline:
        """The open pipeline (only while running)."""
        assert self._pipeline is not None, "pipeline used before run() opened it"
        return self._pipeline

    @property
    def watcher(self) -> Watcher:
        """The started watcher (only while running)."""
        assert self._watcher is not None, "watcher used before run() started it"
        return self._watcher

    def _check_stop(self) -> None:
        self.status.keepalive()
        if self.requests.stop:
            raise _Stop

    # -- what the status shows ----------------------------------------------------------

    def _surroundings(self) -> Surroundings:
        return surroundings(self._pipeline, self._watcher)

    def _report_idle(self) -> None:
        library = None
        if self._pipeline is not None:
            try:
                library = self._pipeline.status()
            except Exception as e:  # noqa: BLE001 - a status line is not worth a failed round
                log.warning("status_query_failed", error=f"{type(e).__name__}: {e}")
        missing = len(self._watcher.gone_roots) if self._watcher else 0
        self.status.set_phase("idle", idle_message(library, missing))

    # -- the work -----------------------------------------------------------------------

    def _batch_size(self) -> int:
        # Small enough that a stop request waits for a few photos only.
        return max(2, 2 * self.cfg.worker_count)

    def _index_in_batches(self, paths: Sequence[Path], phase: str) -> list[int]:
        """Index ``paths`` in small batches; returns the new face ids."""
        n = self._batch_size()
        next_log = self._clock() + PROGRESS_EVERY
        run = IndexReport()
        for start in range(0, len(paths), n):
            self._check_stop()
            if len(paths) > n:
                self.status.set_phase(phase, f"{phase} {start}/{len(paths)}")
            report = self.pipeline.index_photos(paths[start:start + n])
            self.status.counters.add_index(report)
            run.add(report)
            done = min(start + n, len(paths))
            # One info line per PROGRESS_EVERY seconds, not per batch: the first scan of
            # a large library would otherwise log a line every few photos.
            if self._clock() >= next_log or (done == len(paths) and len(paths) > n):
                log.info("indexing_progress", done=done, total=len(paths), indexed=run.indexed,
                         failed=run.failed, faces=len(run.new_face_ids))
                next_log = self._clock() + PROGRESS_EVERY
        return run.new_face_ids

    def _recluster(self) -> None:
        self.status.set_phase("reclustering", "re-clustering faces into people")
        started = self.schedule.now()
        self.pipeline.recluster()
        self.schedule.reclustered(started)
        self.status.counters.reclusters += 1
        self._write_albums()

    def _write_albums(self) -> None:
        self.status.set_phase("writing-albums", "writing albums")
        self.pipeline.write_albums()
        self.status.counters.album_writes += 1
        self.schedule.albums_written()

    def _changes_waiting(self) -> bool:
        """Whether settled photos are already waiting behind the batch in hand (a burst)."""
        w = self._watcher
        return w is not None and w.pending() - w.settling() > 0

    def _write_albums_soon(self) -> None:
        """Write albums now, or, in the middle of a burst, once it is over (see Schedule)."""
        if not self.schedule.put_off_albums(self._changes_waiting()):
            self._write_albums()

    def _rescan(self) -> None:
        """Catch up with the folders: index what is new, forget what vanished."""
        self.status.counters.rescans += 1
        self.watcher.take_rescan_request()  # this scan covers what was dropped
        # "reconciling" is the phase name service.json readers have always seen.
        self.status.set_phase("reconciling", "looking for new and changed photos")
        found = self.pipeline.discover()
        new_ids = self._index_in_batches(found, "indexing")
        self._check_stop()
        removed = self.pipeline.sync_missing()
        self.status.counters.removed += removed
        never = self.pipeline.last_recluster() is None
        if self.schedule.recluster_after_rescan(changed=bool(new_ids or removed),
                                                never_clustered=never):
            self._recluster()
        else:
            self._write_albums()
        self.schedule.rescanned()
        self.pipeline.mark_scanned()  # `status`: not "never" once the service has looked
        log.info("reconciled", photos=len(found), new_faces=len(new_ids), removed=removed)

    def _handle(self, events: Iterable[WatchEvent]) -> None:
        """Apply one batch of watcher events to the store and the albums."""
        work = work_from(events)
        if work.root_back:
            self.schedule.want_rescan()
        if not work.touches_photos:
            return
        self.schedule.photos_changed()
        # Index before removing: a photo moved away and back in (or across folders) is
        # then recognised by its content hash and keeps its faces and people.
        new_ids = self._index_in_batches(work.to_index, "indexing") if work.to_index else []
        # Never forget photos of a root that is not really there (unmounted share), nor a
        # path that exists again (deleted and re-created before we got to it).
        gone = [p for p in work.to_forget
                if self.watcher.root_present(p) and not os.path.lexists(p)]
        removed = self.pipeline.remove(gone) if gone else 0
        if work.folder_gone:
            removed += self.pipeline.sync_missing()
        counters = self.status.counters
        counters.removed += removed
        assigned = self.pipeline.assign_incremental(new_ids) if new_ids else 0
        counters.assigned += assigned
        enough_for_recluster = self.schedule.faces_added(len(new_ids))
        log.info("changes_applied", indexed=len(work.to_index), new_faces=len(new_ids),
                 assigned=assigned, removed=removed)
        if enough_for_recluster:
            self._recluster()
        else:
            self._write_albums_soon()

    def _check_labels(self) -> None:
        if not self.schedule.labels_check_due():
            return
        if not self._labels_watch.changed():
            return
        error = self.pipeline.reload_labels()
        if error:
            # The last good labels stay in force; the error is in the status until fixed.
            log.error("labels_kept", error=error)
            self.status.write()
            return
        log.info("labels_reloaded", file=str(self.cfg.labels_file))
        self._write_albums()
        # Names and "not this person" marks also steer clustering; catch up when quiet.
        self.schedule.want_recluster()

    def _check_config(self) -> None:
        """Ask for a reload when the config file changed (as a SIGHUP would)."""
        if self.schedule.config_check_due() and self._config_watch.changed():
            self.requests.reload = True

    # -- opening, closing, reloading ----------------------------------------------------

    def _reload_config(self) -> None:
        self.requests.reload = False
        if not self.cfg.config_files and self.cfg.config_path is None:
            log.warning("config_reload_skipped", reason="the service runs on defaults, no file")
            return
        try:
            new = reload_config(self.cfg)
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
        self._web = restart_web(self._web, self.cfg, new)
        self.cfg = new
        self.schedule.rules = new.daemon
        self._open()
        self._labels_watch = FileWatch(self.cfg.labels_file, seen_now=False)  # re-read them
        self.schedule.want_rescan()

    def _open(self) -> None:
        from daemon.stages.pipeline import Pipeline

        # Shared, so the pipeline never forgets photos of a share the watcher saw unmounted.
        mounts = MountPoints()
        self._pipeline = Pipeline(
            self.cfg, create=True, mounts=mounts, workers=_cluster(self.cfg))
        self._watcher = Watcher(self.cfg, mounts=mounts)
        self._watcher.start()
        self._labels_watch.mark_seen()  # the Pipeline just read them

    def _close(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        if self._pipeline is not None:
            self._pipeline.close()
            self._pipeline = None

    # -- the loop -----------------------------------------------------------------------

    def _pause(self, seconds: float) -> None:
        """Sleep, but wake up for a stop signal and keep the watchdog fed."""
        end = self._clock() + seconds
        while not self.requests.stop and self._clock() < end:
            time.sleep(min(LOOP_WAIT, max(0.0, end - self._clock())))
            self.status.keepalive()

    def _step(self) -> None:
        """One round of the main loop."""
        self._check_config()
        if self.requests.reload:
            self._reload_config()
        self._check_labels()
        if self.watcher.rescan_requested:
            self.schedule.want_rescan()
        if self.schedule.rescan_due():
            self._rescan()
            self._report_idle()
        events = self.watcher.poll(LOOP_WAIT, limit=self._batch_size() * 4)
        if events:
            try:
                self._handle(events)
            except Exception:
                # These events are consumed; a rescan (cheap for unchanged photos)
                # makes sure none of them is lost for good.
                self.schedule.want_rescan()
                raise
            self._report_idle()
        if self.schedule.albums_overdue(self._changes_waiting()):
            self._write_albums()
        if self.schedule.recluster_due():
            self._recluster()
        if self.status.phase != "idle":
            self._report_idle()

    def _round_failed(self, e: Exception) -> bool:
        """Count a failed round; True when it is time to give up (and be restarted)."""
        self.status.counters.errors += 1
        self._errors_in_row += 1
        log.exception("service_round_failed", error=str(e), in_row=self._errors_in_row)
        if self._errors_in_row >= MAX_CONSECUTIVE_ERRORS:
            log.error("service_giving_up", hint="the service manager restarts it")
            return True
        self._pause(min(30.0, 2.0 ** self._errors_in_row))
        return False

    def run(self) -> int:
        """Run until a stop signal; returns the process exit code."""
        self.requests.install()
        code = 0
        try:
            self._open()
            self._web = start_web(self.cfg)
            self.status.ready("starting: reconciling with the folders")
            log.info("service_started", pid=os.getpid(), engine=self.pipeline.engine_id,
                     roots=[str(r) for r in self.cfg.watch])
            self.schedule.want_rescan()
            while not self.requests.stop:
                try:
                    self._step()
                    self._errors_in_row = 0
                except _Stop:
                    break
                except Exception as e:  # noqa: BLE001 - one bad round must not end the service
                    if self._round_failed(e):
                        code = 1
                        break
                self.status.keepalive()
        finally:
            self.status.stopping()
            if self._web is not None:
                self._web.stop()
                self._web = None
            self._close()
            self.status.stopped()
            log.info("service_stopped", code=code)
        return code


def clear_leftovers(cfg: Config) -> None:
    """Remove the temporary files of writes killed mid-way (kill -9, a power cut) beside
    labels.toml and in the state dir; the album writer clears its own tree."""
    from daemon.fsutil import remove_stale_temps
    from daemon.people import naming

    try:
        edits = naming.clear_leftovers(cfg.labels_file)
    except OSError as e:  # a read-only folder or a held lock: only litter is left
        log.warning("labels_leftovers_kept", folder=str(cfg.labels_file.parent), error=str(e))
        edits = 0
    state = remove_stale_temps(cfg.state_dir, older_than=naming.STALE_TEMP_SECONDS)
    if edits or state:
        log.info("leftovers_cleared", beside_labels=edits, in_state=len(state))


def run(cfg: Config) -> int:
    """Entry point of ``facecluster run``. Raises ``lock.AlreadyRunning`` if one runs."""
    with lock.hold(cfg.state_dir):
        lower_priority(cfg.daemon.nice)
        clear_leftovers(cfg)
        return Service(cfg).run()
