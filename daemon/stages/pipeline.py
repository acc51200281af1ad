"""The pipeline: photos on disk → faces → people → album folders, for one configuration.

:class:`Pipeline` opens the long-lived pieces (the store, the engine's workers, the labels)
and composes the stages in :mod:`daemon.stages`: sync (photos → store), people (faces →
people, steered by labels.toml) and reflect (people → album tree). ``facecluster scan``
calls :meth:`Pipeline.scan` once; the service calls the stages one by one as events
arrive. Data flows one way: the indexer never sees the store, the clusterer never sees
files, and the album writer only sees plans.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import structlog

from daemon import albums, cluster
from daemon.config import Config
from daemon.fsutil import utc_now
from daemon.indexer import engine_id_for
from daemon.indexer.types import Indexer
from daemon.library.roots import MountPoints
from daemon.people import labels
from daemon.people.identity import Identity
from daemon.stages.people import People
from daemon.stages.reflect import Reflect
from daemon.stages.reports import (
    ClusterReport,
    IndexReport,
    PersonRow,
    PipelineStatus,
    ScanReport,
)
from daemon.stages.sync import ProgressFn, Sync
from daemon.store import Store, StoreError
from daemon.store.db import DB_NAME

log = structlog.get_logger(__name__)


def _has_traces(cfg: Config) -> bool:
    """Whether an earlier store left anything behind (caches, an album manifest)."""
    return any(cfg.state_dir.glob("vectors-*")) or (
        cfg.albums_dir / ".facecluster" / "manifest.json"
    ).exists()


class Pipeline:
    """The stages of facecluster for one configuration.

    Use as a context manager; it holds the store open and, once indexing starts, a pool
    of worker processes that each keep the face models loaded.
    """

    def __init__(
        self,
        cfg: Config,
        *,
        create: bool = False,
        mounts: MountPoints | None = None,
        as_indexed: bool = False,
        workers: Indexer | None = None,
        report_labels: bool = True,
    ) -> None:
        """Open the pipeline's store.

        ``create`` allows starting a store from nothing (scan, run, rebuild). Without it,
        a missing database where there are traces of an earlier one (vector caches, an
        album tree) is an error: the store was deleted, and reading commands must say so
        rather than report an empty library. ``mounts`` shares what a watcher learnt
        about mount points (see :mod:`daemon.library.roots`). ``as_indexed`` describes the store
        with the engine it was indexed with rather than the one the config picks now (a
        model file that appeared since changes the engine only at the next start): for
        reading commands. ``workers``: index workers the caller already started (they load
        the models while this process starts up); the pipeline stops them on close.
        ``report_labels=False``: labels.toml's problems are not logged (a reading command
        prints them itself, once).
        """
        self.cfg = cfg
        self.engine_id = engine_id_for(cfg.engine)
        if not (cfg.state_dir / DB_NAME).exists() and _has_traces(cfg):
            if not create:
                raise StoreError(
                    f"{cfg.state_dir / DB_NAME} is missing but albums exist: the store was "
                    "deleted; run `facecluster rebuild` to re-derive it from the photos"
                )
            log.warning(
                "store_missing",
                path=str(cfg.state_dir / DB_NAME),
                hint="re-deriving from the photos; state/identity.json gives the people "
                "named in labels.toml back their ids",
            )
        self.store = Store.open(cfg.state_dir)
        if as_indexed:
            self.engine_id = self.store.get_meta("engine") or self.engine_id
        self.identity = Identity(cfg.state_dir, cfg.albums_dir)
        self._sync = Sync(cfg, self.store, self.engine_id, mounts or MountPoints(), workers)
        self._people = People(
            cfg, self.store, self.engine_id, self.identity, report_labels=report_labels
        )
        self._reflect = Reflect(
            cfg, self.store, self.engine_id, lambda: self._people.labels, self.identity
        )

    # -- life cycle -------------------------------------------------------------------

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers and close the store."""
        self._sync.close()
        self.store.close()

    # -- sync: photos on disk → store ---------------------------------------------------

    def discover(self) -> list[Path]:
        """Every photo under the watched folders that exist (missing ones are logged)."""
        return self._sync.discover()

    def index_photos(
        self, paths: Iterable[Path], progress: ProgressFn | None = None
    ) -> IndexReport:
        """Bring the store up to date for ``paths`` (see :meth:`Sync.index_photos`).

        First keeps the store from handing a new face or person an id that labels.toml
        or the identity anchors already use for someone else.
        """
        self.identity.reserve(self.store, self.labels)  # before any face gets an id
        return self._sync.index_photos(paths, progress)

    def remove(self, paths: Iterable[Path]) -> int:
        """Forget photos that were deleted; returns how many were known."""
        return self._sync.remove(paths)

    def indexing(self) -> dict:
        """Where photos are indexed: here, or the cluster's workers (``status``)."""
        return self._sync.indexing()

    def sync_missing(self) -> int:
        """Forget photos that no longer exist, except under a folder not really there."""
        return self._sync.sync_missing()

    # -- people: faces → people, steered by labels.toml ---------------------------------

    @property
    def labels(self) -> labels.Labels:
        """The labels in force (the last good ones when the file has an error)."""
        return self._people.labels

    @property
    def labels_error(self) -> str | None:
        """What is wrong with labels.toml, or None."""
        return self._people.labels_error

    def reload_labels(self) -> str | None:
        """Re-read labels.toml. On error the last good labels stay; returns the error."""
        return self._people.reload_labels()

    def unknown_labelled(self) -> list[str]:
        """labels.toml entries naming a person the store never had (a typo, an old id)."""
        return self._people.unknown_labelled()

    def labels_problems(self) -> list[str]:
        """Every problem of labels.toml at once: broken lines, then ids naming nobody."""
        return self._people.labels_problems()

    def cluster_params(self) -> cluster.ClusterParams:
        """The engine's measured defaults, with the config's overrides."""
        return self._people.cluster_params()

    def recluster(self) -> ClusterReport:
        """Re-cluster every face of the current engine; person ids stay stable."""
        report = self._people.recluster()
        self._reflect.regrouped()
        return report

    def assign_incremental(self, face_ids: Sequence[int]) -> int:
        """Give new faces to existing people at once; returns how many joined."""
        return self._people.assign_incremental(face_ids)

    def last_recluster(self) -> str | None:
        """When the faces were last re-clustered (UTC ISO time), or None if never."""
        return self.store.get_meta("last_recluster")

    # -- reflect: people → album tree ---------------------------------------------------

    def plans(self) -> list[albums.AlbumPlan]:
        """What the album tree should hold now."""
        return self._reflect.plans()

    def write_albums(self) -> albums.AlbumReport:
        """Make the album tree match the people, labels and config."""
        return self._reflect.write_albums()

    def people(self, plans: Sequence[albums.AlbumPlan] | None = None) -> list[PersonRow]:
        """Every person with faces, with their name, album folder and a sample photo."""
        return self._reflect.people(plans)

    def find_album(self, who: str) -> albums.AlbumPlan | None:
        """The album plan for a folder name, a person's name, or an id like person-0007."""
        return self._reflect.find_album(who)

    # -- the whole thing ---------------------------------------------------------------

    def scan(self, progress: Callable[[int | None], ProgressFn] | None = None) -> ScanReport:
        """Index every watched folder, forget what vanished, re-cluster, write albums.

        ``progress``, if given, is called once with the number of photos found and
        returns the per-photo callback.
        """
        t0 = time.monotonic()
        found = self.discover()
        tick = progress(len(found)) if progress else None
        report = self.index_photos(found, tick)
        # No photo comes after this: the workers' exit (each frees its models) overlaps
        # clustering and albums instead of delaying the end of the command.
        stopping = threading.Thread(target=self._sync.close, name="stop-index-workers")
        stopping.start()
        try:
            removed = self.sync_missing()
            clustered = self.recluster()
            written = self.write_albums()
            self.mark_scanned()
        finally:
            stopping.join()
        return ScanReport(report, removed, clustered, written, time.monotonic() - t0)

    def mark_scanned(self) -> None:
        """Record that every watched folder was just looked at (``status``: last scan)."""
        self.store.set_meta("last_scan", utc_now())

    def status(self) -> PipelineStatus:
        """Counts and timestamps for ``facecluster status``."""
        counts = self.store.counts()
        return PipelineStatus(
            engine=self.engine_id,
            photos={"indexed": counts.photos_indexed, "failed": counts.photos_failed},
            faces=counts.faces,
            people=counts.people,
            last_scan=self.store.get_meta("last_scan"),
            last_recluster=self.last_recluster(),
            labels_error=self.labels_error,
            identity_conflicts=self.identity.conflicts,
        )
