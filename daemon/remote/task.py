"""The worker side: a plugin that loads the engine once, and the task that indexes a photo.

A worker never writes anything of the library: it returns an :class:`IndexedPhoto` or a
:class:`PhotoError` (or one of the two small requests below) and the service stores it.
The photo is reached by path where the worker sees the same files (after the worker's
path mapping), else the service sends its bytes; the content hash is checked either way,
so a different file that happens to sit at the mapped path is never indexed instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from distributed import WorkerPlugin, get_worker

from daemon.config import DetectionConfig, EngineConfig
from daemon.indexer.models import sha256_file
from daemon.indexer.pool import index_one
from daemon.indexer.types import IndexedPhoto, PhotoError
from daemon.remote.fingerprint import Fingerprint, fingerprint

if TYPE_CHECKING:
    from distributed import Worker

    from daemon.indexer.engine import Engine

log = structlog.get_logger(__name__)

PLUGIN_NAME = "facecluster-engine"
EXPECTED_KEY = "facecluster-engine"
"""Scheduler metadata: the service's engine :class:`Fingerprint` (as plain data)."""


QUIET = {
    # Dask's defaults suit interactive analysis; on a NAS they cost CPU every photo pays
    # for (bench/cluster_index.py measures it): a sampling profiler every 10 ms and an
    # event-loop check every 20 ms in each process, memory and system polls.
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.admin.system-monitor.gil.enabled": False,
    "distributed.worker.memory.monitor-interval": "1s",
    # Every task is alike and carries no data: nothing to steal or to rebalance.
    "distributed.scheduler.work-stealing": False,
    "distributed.scheduler.active-memory-manager.start": False,
}


def quiet_dask() -> None:
    """Apply :data:`QUIET` to this process (nannies hand it on to their workers)."""
    import dask

    dask.config.set(QUIET)


class EngineRefused(RuntimeError):
    """This worker's engine is not the service's: its faces could not be compared."""


@dataclass(frozen=True)
class NeedBytes:
    """The worker cannot see this photo (or sees other bytes there): send its content."""

    why: str


@dataclass(frozen=True)
class Refused:
    """The worker's engine differs from the one the task asked for."""

    worker: str
    why: str


def map_path(path: str, path_map: dict[str, str]) -> str:
    """The service's ``path`` as this machine sees it: the longest matching prefix wins."""
    for remote in sorted(path_map, key=len, reverse=True):
        root = remote.rstrip("/")
        if path == root or path.startswith(root + "/"):
            return path_map[remote].rstrip("/") + path[len(root):]
    return path


def refusal(expected: Fingerprint, mine: Fingerprint) -> str | None:
    """Why a worker with ``mine`` must not index for a service with ``expected``, or None."""
    diff = expected.differences(mine)
    if not diff:
        return None
    return ("this worker's engine differs from the service's: " + "; ".join(diff)
            + " (install the same models and package versions as the service)")


class EnginePlugin(WorkerPlugin):
    """Loads the engine once per worker process; refuses to start when the service (whose
    fingerprint the scheduler holds) uses another engine."""

    name = PLUGIN_NAME

    def __init__(self, engine: EngineConfig, path_map: dict[str, str] | None = None, *,
                 same_files: bool = False) -> None:
        self.engine_cfg = engine
        self.path_map = dict(path_map or {})
        self.same_files = same_files
        """A worker the service started beside itself: it opens the very files the
        service has just hashed, so it trusts that hash as the local pool does instead
        of reading and hashing each photo a second time on the service's own cores."""
        self.engine: Engine | None = None
        self.fingerprint: Fingerprint | None = None

    def __getstate__(self) -> dict:
        # Sent to the worker process before it loads anything: never the loaded models.
        return {"engine_cfg": self.engine_cfg, "path_map": self.path_map,
                "same_files": self.same_files, "engine": None, "fingerprint": None}

    async def setup(self, worker: Worker) -> None:
        self.fingerprint = await asyncio.to_thread(fingerprint, self.engine_cfg)
        published = await worker.scheduler.get_metadata(keys=[EXPECTED_KEY], default=None)
        expected = Fingerprint.from_dict(published)
        if expected is not None:
            why = refusal(expected, self.fingerprint)
            if why:
                log.error("cluster_worker_refused", reason=why)
                raise EngineRefused(why)
        self.engine = await asyncio.to_thread(_load, self.engine_cfg)
        log.info("cluster_worker_ready", engine=self.fingerprint.as_text(),
                 path_map=self.path_map or None)


def _load(engine_cfg: EngineConfig) -> Engine:
    import cv2

    from daemon.indexer.engine import open_engine

    cv2.setNumThreads(1)  # the worker's one thread; parallelism comes from the processes
    return open_engine(engine_cfg)


def _index_bytes(path: str, data: bytes, engine: Engine, detection: DetectionConfig,
                 workdir: str) -> IndexedPhoto | PhotoError:
    # The decoders read files (RAW and HEIF ones by name): a private temporary copy.
    fd, tmp = tempfile.mkstemp(suffix=Path(path).suffix, dir=workdir)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return index_one(Path(tmp), engine, detection)
    finally:
        os.unlink(tmp)


def _one(plugin: EnginePlugin, path: str, digest: str, data: bytes | None,
         detection: DetectionConfig, workdir: str) -> object:
    assert plugin.engine is not None
    if data is None and plugin.same_files:
        result = index_one(Path(path), plugin.engine, detection)
    elif data is None:
        local = map_path(path, plugin.path_map)
        try:
            same = sha256_file(Path(local)) == digest
        except OSError as e:
            return NeedBytes(f"cannot read {local}: {e.strerror or e}")
        if not same:
            return NeedBytes(f"{local} holds other bytes")
        result = index_one(Path(local), plugin.engine, detection)
    elif hashlib.sha256(data).hexdigest() != digest:
        result = PhotoError("the photo changed while it was being indexed", transient=True)
    else:
        result = _index_bytes(path, data, plugin.engine, detection, workdir)
    return replace(result, path=Path(path)) if isinstance(result, IndexedPhoto) else result


def index_task(photos: list[tuple[str, str, bytes | None]], detection: DetectionConfig,
               expected: dict) -> tuple[str, list[object], float]:
    """Index a few photos ``(path, content hash, bytes or None)`` on this worker.

    Returns the worker's address; in order, an ``IndexedPhoto``, ``PhotoError``,
    ``NeedBytes`` (it cannot see the photo: send ``bytes``) or ``Refused`` for each; and
    the CPU seconds it took (the service sizes its next tasks by it: CPU, not wall time,
    so a worker slowed by other load does not make the tasks, and Dask's cost per task
    on the service's core, a larger share of the work).
    """
    started = time.thread_time()  # the task runs in this one thread of the worker
    worker = get_worker()
    plugin: EnginePlugin = worker.plugins[PLUGIN_NAME]  # type: ignore[assignment]
    assert plugin.engine is not None and plugin.fingerprint is not None
    wanted = Fingerprint.from_dict(expected)
    why = "no engine named" if wanted is None else refusal(wanted, plugin.fingerprint)
    if why:
        return worker.address, [Refused(worker.address, why)] * len(photos), 0.0
    results = [_one(plugin, path, digest, data, detection, worker.local_directory)
               for path, digest, data in photos]
    return worker.address, results, time.thread_time() - started


def worker_fingerprint(dask_worker: Worker) -> dict | None:
    """Run on each worker by the service (``Client.run`` passes ``dask_worker``): its
    engine's fingerprint, as plain data."""
    plugin = dask_worker.plugins.get(PLUGIN_NAME)
    fp = getattr(plugin, "fingerprint", None)
    return fp.as_dict() if fp is not None else None
