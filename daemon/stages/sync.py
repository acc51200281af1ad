"""Sync: bring the store up to date with the photos on disk.

Discover the photos under the watched folders, classify each by ``stat`` and content hash
(unchanged, touched, moved, copied, or new), index what is new in the worker processes,
and forget what vanished, never under a watched folder that is not really there
(:func:`daemon.library.roots.root_present`).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import structlog

from daemon.config import Config
from daemon.indexer import IndexedPhoto, PhotoError
from daemon.indexer.models import sha256_file
from daemon.indexer.types import Indexer
from daemon.library import photos
from daemon.library.roots import MountPoints, root_present, root_watchable
from daemon.stages.reports import IndexReport
from daemon.store import PhotoRecord, Store

log = structlog.get_logger(__name__)

CHUNK = 128
"""Photos classified (stat + hash) before each round of indexing; bounds memory."""
MAX_TRANSIENT_ATTEMPTS = 5
"""A photo that failed for a passing reason is tried again at most this often."""

ProgressFn = Callable[[int], None]


def content_hash(path: Path) -> str:
    """SHA-256 of the file's bytes: how a moved or duplicated photo is recognised.

    The same digest Dask workers check a photo against (:mod:`daemon.remote`), so both
    use one function.
    """
    return sha256_file(path)


def given_up(rec: PhotoRecord) -> bool:
    """A failed photo is not tried again until it changes: permanently broken, or out of
    retries for a passing error."""
    return not (rec.transient and rec.attempts < MAX_TRANSIENT_ATTEMPTS)


class Sync:
    """The photos on disk → the store, for one engine.

    Holds the pool of worker processes once indexing starts (or from the start, when
    given ``workers`` already loading); :meth:`close` stops it.
    """

    def __init__(self, cfg: Config, store: Store, engine_id: str, mounts: MountPoints,
                 workers: Indexer | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.engine_id = engine_id
        self.mounts = mounts
        self._pool = workers
        self._pool_entered = False

    def close(self) -> None:
        """Stop the workers."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
            self._pool_entered = False

    def indexing(self) -> dict:
        """Where photos are indexed (``status``); empty before the first photo."""
        return self._pool.describe() if self._pool is not None else {}

    def _workers(self) -> Indexer:
        if not self._pool_entered:
            previous = self.store.get_meta("engine")
            if previous and previous != self.engine_id:
                log.warning(
                    "engine_changed",
                    old=previous,
                    new=self.engine_id,
                    hint="photos are re-embedded; faces of different engines are never compared",
                )
            self.store.set_meta("engine", self.engine_id)
            # Starting the pool loads the models in every worker: only once work arrives
            # (unless the caller started it early, to load them while it starts up).
            from daemon.remote import make_indexer

            pool = self._pool or make_indexer(self.cfg)
            self._pool = pool.__enter__()
            self._pool_entered = True
        assert self._pool is not None
        return self._pool

    def _present_roots(self) -> list[Path]:
        return [r for r in self.cfg.watch if root_present(r, self.mounts)]

    # -- discovering and indexing -------------------------------------------------------

    def discover(self) -> list[Path]:
        """Every photo under the watched folders that exist (missing ones are logged)."""
        roots = self._present_roots()
        for r in self.cfg.watch:
            if r in roots:
                continue
            if root_watchable(r, self.mounts) and not self.store.has_photos_under(r):
                # A new, still empty photo folder (the first run makes one): nothing is
                # missing and nothing is kept, so no warning on every rescan.
                log.debug("watched_folder_empty", path=str(r))
            else:
                log.warning("watched_folder_missing", path=str(r))
        return list(photos.walk_photos(roots, self.cfg))

    def _needs_work(self, st: os.stat_result, rec: PhotoRecord | None) -> bool:
        """Decide from ``stat`` alone (no read) whether a photo may have changed."""
        if rec is None or rec.size != st.st_size or rec.mtime_ns != st.st_mtime_ns:
            return True
        if rec.status == "failed":
            return not given_up(rec)
        return rec.engine != self.engine_id

    def _stands_in_for_raw(self, path: Path, report: IndexReport) -> bool:
        """A RAW whose JPEG of the same shot is there: the JPEG stands for it, once."""
        if photos.raw_twin(path) is None:
            return False
        if self.store.photo(path) is not None:
            self.store.delete_photo(path)
        report.skipped += 1
        return True

    def _forget_raws_of(self, path: Path) -> None:
        """A JPEG arriving after its RAW (a card import copies .CR2 first) replaces it."""
        for raw in photos.raw_names(path):
            if self.store.photo(raw) is not None:
                self.store.delete_photo(raw)

    def _classify(self, path: Path, report: IndexReport) -> tuple[Path, os.stat_result, str] | None:
        """Handle what needs no embedding; return what does.

        Unchanged photos are skipped by ``stat``; a changed ``stat`` with the same bytes
        (touched, or moved/duplicated from elsewhere) reuses the stored faces by content
        hash. Only genuinely new content goes on to the workers.
        """
        store = self.store
        if self._stands_in_for_raw(path, report):
            return None
        try:
            st = os.stat(path)
        except FileNotFoundError:
            store.delete_photo(path)  # gone between event and read
            return None
        except OSError as e:
            return self._unreadable(path, e, report)
        if not stat.S_ISREG(st.st_mode):
            log.debug("not_a_file", path=str(path))
            return None
        rec = store.photo(path)
        if not self._needs_work(st, rec):
            report.skipped += 1
            return None
        self._forget_raws_of(path)
        try:
            digest = content_hash(path)
        except OSError as e:
            return self._unreadable(path, e, report, st)
        if (
            rec is not None
            and rec.content_hash == digest
            and rec.status == "indexed"
            and rec.engine == self.engine_id
        ):
            store.move_photo(path, path, st.st_size, st.st_mtime_ns)  # touched, same bytes
            report.skipped += 1
            return None
        twins = [
            r
            for r in store.photos_with_hash(digest)
            if r.path != path and r.status == "indexed" and r.engine == self.engine_id
        ]
        if twins:
            if rec is not None:
                store.delete_photo(path)
            gone = next((t for t in twins if not t.path.exists()), None)
            if gone is not None:
                store.move_photo(gone.path, path, st.st_size, st.st_mtime_ns)
                log.debug("photo_moved", old=str(gone.path), new=str(path))
                report.moved += 1
            else:
                ids = store.copy_photo(twins[0].path, path, st.st_size, st.st_mtime_ns)
                report.new_face_ids.extend(ids)
                report.copied += 1
            return None
        return path, st, digest

    def _unreadable(
        self,
        path: Path,
        err: OSError,
        report: IndexReport,
        st: os.stat_result | None = None,
    ) -> None:
        """Record a photo that cannot be stat'ed or read, retrying passing errors boundedly."""
        rec = self.store.photo(path)
        if (
            rec is not None
            and rec.status == "failed"
            and (st is None or (rec.size, rec.mtime_ns) == (st.st_size, st.st_mtime_ns))
            and given_up(rec)
        ):
            report.skipped += 1
            return None
        # A symlink loop or a name too long never heals by waiting; permissions and
        # vanishing network shares may.
        transient = err.errno not in (errno.ELOOP, errno.ENAMETOOLONG, errno.EISDIR)
        reason = f"cannot {'read' if st else 'stat'}: {err.strerror or err}"
        size, mtime = (st.st_size, st.st_mtime_ns) if st else (0, 0)
        self.store.save_failed(path, size, mtime, None, reason, transient)
        log.warning("photo_failed", path=str(path), reason=reason, transient=transient)
        report.failed += 1
        return None

    def _classified(
        self, paths: Iterable[Path], report: IndexReport, progress: ProgressFn | None
    ) -> Iterator[list[tuple[Path, os.stat_result, str]]]:
        chunk: list[tuple[Path, os.stat_result, str]] = []
        for p in paths:
            item = self._classify(Path(p), report)
            if item is not None:
                chunk.append(item)
            elif progress:
                progress(1)
            if len(chunk) >= CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def index_photos(
        self, paths: Iterable[Path], progress: ProgressFn | None = None
    ) -> IndexReport:
        """Bring the store up to date for ``paths`` (new, changed, moved or touched photos).

        A photo that cannot be read is recorded as failed with its reason and the round
        goes on. ``progress`` is called with the number of photos handled since the last
        call.
        """
        report = IndexReport()
        for chunk in self._classified(paths, report, progress):
            known = {p: (st, digest) for p, st, digest in chunk}
            with self.store.batch():
                digests = {p: d for p, _, d in chunk}
                for path, result in self._workers().imap(list(digests), digests):
                    st, digest = known[path]
                    self._save(path, st, digest, result, report)
                    if progress:
                        progress(1)
        return report

    def _save(
        self,
        path: Path,
        st: os.stat_result,
        digest: str,
        result: IndexedPhoto | PhotoError,
        report: IndexReport,
    ) -> None:
        if isinstance(result, PhotoError):
            self.store.save_failed(
                path, st.st_size, st.st_mtime_ns, digest, result.reason, result.transient
            )
            log.warning("photo_failed", path=str(path), reason=result.reason)
            report.failed += 1
            return
        ids = self.store.save_indexed(path, st.st_size, st.st_mtime_ns, digest, result)
        report.new_face_ids.extend(ids)
        report.indexed += 1
        log.debug("photo_indexed", path=str(path), faces=len(ids))

    # -- forgetting ---------------------------------------------------------------------

    def remove(self, paths: Iterable[Path]) -> int:
        """Forget photos that were deleted; returns how many were known."""
        n = 0
        with self.store.batch():
            for p in paths:
                if self.store.photo(Path(p)) is not None:
                    self.store.delete_photo(Path(p))
                    n += 1
        return n

    def sync_missing(self) -> int:
        """Forget photos that no longer exist, are ignored, lie outside every root, or are a
        RAW whose JPEG twin now stands for the shot.

        Photos under a watched folder that is not really there are kept: an unmounted
        share must not empty the albums.
        """
        present = self._present_roots()
        absent = [r for r in self.cfg.watch if r not in present]
        gone: list[Path] = []
        for rec in self.store.iter_photos():
            p = rec.path
            if any(p.is_relative_to(r) for r in absent):
                continue
            if (
                not any(p.is_relative_to(r) for r in present)
                or not photos.is_wanted(p, self.cfg)
                or not os.path.lexists(p)
            ):
                gone.append(p)
        if gone:
            log.info("photos_gone", count=len(gone))
        return self.remove(gone)
