"""Status reporting of the service: ``service.json``, its phase, and the systemd lines.

:class:`StatusReporter` keeps the phase and the one-line message, rewrites
``state_dir/service.json`` when they change and every :data:`STATUS_EVERY` seconds
meanwhile, sends ``STATUS=`` lines and the watchdog keep-alive to the service manager, and
counts what the service did (:class:`Counters`). ``facecluster status`` reads the file
with :func:`read_service_status`. The clock and the service manager are injected, so the
timing is testable without waiting.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Protocol

import structlog

from daemon.fsutil import atomic_write, utc_now
from daemon.service import sdnotify
from daemon.stages.reports import IndexReport, PipelineStatus

log = structlog.get_logger(__name__)

STATUS_NAME = "service.json"
STATUS_EVERY = 5.0
"""Seconds between status-file writes while nothing changes."""


# -- the status file ---------------------------------------------------------------------


@dataclass
class Counters:
    """What the service did since it started."""

    photos: IndexReport = field(default_factory=IndexReport)
    """Indexing outcomes summed over every round (new faces are counted, not kept)."""
    removed: int = 0
    new_faces: int = 0
    assigned: int = 0
    reclusters: int = 0
    rescans: int = 0
    album_writes: int = 0
    errors: int = 0

    def add_index(self, report: IndexReport) -> None:
        """Count one round of indexing."""
        # Keeping every new face id would grow without bound in a long-running service.
        self.photos.add(replace(report, new_face_ids=[]))
        self.new_faces += len(report.new_face_ids)

    def as_dict(self) -> dict[str, int]:
        """The flat form of ``service.json``'s ``counters``."""
        p = self.photos
        counts = {"indexed": p.indexed, "unchanged": p.skipped, "moved": p.moved,
                  "copied": p.copied, "failed": p.failed}
        counts.update({f.name: getattr(self, f.name) for f in fields(self) if f.name != "photos"})
        return counts


@dataclass(frozen=True)
class ServiceStatus:
    """The content of ``state_dir/service.json``."""

    pid: int
    started_at: str
    updated_at: str
    phase: str
    """starting, reconciling (rescanning the folders), indexing, reclustering,
    writing-albums, idle, stopping, stopped."""
    message: str
    """The one-line STATUS= text, e.g. ``idle, 3412 photos, 57 people``."""
    queue_length: int
    last_recluster: str | None
    labels_error: str | None
    engine: str
    roots: dict[str, str] = field(default_factory=dict)
    """Watched root -> ``events``, ``polling`` or ``gone``."""
    counters: dict[str, int] = field(default_factory=dict)
    indexing: dict = field(default_factory=dict)
    """Where photos are indexed: ``mode`` local or cluster, the cluster's workers and
    photos/s each, why the local pool stands in (``lost``)."""

    def as_dict(self) -> dict:
        """Plain JSON-ready form."""
        return asdict(self)

    @property
    def summary(self) -> str:
        """The phase as the user reads it: ``idle, 87 photos``, ``indexing 12/40``.

        Every message the service sets already names its phase (``set_phase`` defaults
        the message to the phase), so the phase is never printed in front of it again.
        """
        return self.message or self.phase


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


def idle_message(library: PipelineStatus | None, missing_roots: int) -> str:
    """The STATUS= line at rest, e.g. ``idle, 3412 photos, 57 people``."""
    msg = "idle"
    if library is not None:
        msg = f"idle, {sum(library.photos.values())} photos, {library.people} people"
        if library.labels_error:
            msg += ", labels.toml has an error"
    if missing_roots:
        msg += f", {missing_roots} folder(s) missing"
    return msg


# -- reporting -----------------------------------------------------------------------------


class ServiceManager(Protocol):
    """Who hears the service's life-cycle lines: :mod:`daemon.service.sdnotify` (systemd)."""

    def ready(self, status: str | None = None) -> bool: ...
    def status(self, text: str) -> bool: ...
    def watchdog_ping(self) -> bool: ...
    def stopping(self) -> bool: ...


@dataclass(frozen=True)
class Surroundings:
    """What the status file shows of the service's running parts, read at each write."""

    queue_length: int = 0
    last_recluster: str | None = None
    labels_error: str | None = None
    engine: str = ""
    roots: dict[str, str] = field(default_factory=dict)
    indexing: dict = field(default_factory=dict)


class StatusReporter:
    """The service's phase, written to ``service.json`` and told to the service manager.

    ``surroundings`` is called at each write; ``watchdog_every`` is the keep-alive
    interval in seconds (None: no watchdog).
    """

    def __init__(
        self,
        state_dir: Path,
        surroundings: Callable[[], Surroundings],
        *,
        watchdog_every: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        manager: ServiceManager = sdnotify,
    ) -> None:
        self.state_dir = state_dir
        self.started_at = utc_now()
        self.counters = Counters()
        self.phase = "starting"
        self.message = "starting"
        self._surroundings = surroundings
        self._watchdog_every = watchdog_every
        self._clock = clock
        self._manager = manager
        self._next_ping = float("-inf")
        self._next_write = float("-inf")

    def keepalive(self) -> None:
        """Feed the watchdog and rewrite the status file, each when it is due."""
        now = self._clock()
        if self._watchdog_every and now >= self._next_ping:
            self._manager.watchdog_ping()
            self._next_ping = now + self._watchdog_every
        if now >= self._next_write:
            self.write()

    def set_phase(self, phase: str, message: str | None = None) -> None:
        """Enter ``phase``; a change is written and told to the manager at once."""
        message = message or phase
        changed = (phase, message) != (self.phase, self.message)
        self.phase, self.message = phase, message
        if changed:
            self._manager.status(message)
            self.write()

    def write(self) -> None:
        """Rewrite ``service.json`` now; a failed write is logged, not raised."""
        self._next_write = self._clock() + STATUS_EVERY
        parts = self._surroundings()
        status = ServiceStatus(
            pid=os.getpid(),
            started_at=self.started_at,
            updated_at=utc_now(),
            phase=self.phase,
            message=self.message,
            queue_length=parts.queue_length,
            last_recluster=parts.last_recluster,
            labels_error=parts.labels_error,
            engine=parts.engine,
            roots=parts.roots,
            counters=self.counters.as_dict(),
            indexing=parts.indexing,
        )
        try:
            write_service_status(self.state_dir, status)
        except OSError as e:
            log.warning("status_write_failed", error=str(e))

    def ready(self, message: str) -> None:
        """Start-up is done: write the status and send READY=1 with ``message``."""
        self.write()
        self._manager.ready(message)

    def stopping(self) -> None:
        """Send STOPPING=1 and say so in the file (best effort: the service is ending)."""
        self._manager.stopping()
        self.phase = self.message = "stopping"
        with contextlib.suppress(Exception):
            self.write()

    def stopped(self) -> None:
        """Mark the file stopped, so readers know no service runs (best effort)."""
        self.phase = self.message = "stopped"
        with contextlib.suppress(Exception):
            self.write()
