"""The pipeline: photos on disk → faces → people → album folders.

:class:`Pipeline` owns the long-lived pieces (store, engine workers, labels) for one
configuration and offers each stage as a method. ``facecluster scan`` calls
:meth:`Pipeline.scan` once; the service calls the stages one by one as events arrive.
Data flows one way: the indexer never sees the store, the clusterer never sees files,
and the album writer only sees plans.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import structlog

from daemon import albums, cluster, labels, photos, roster
from daemon.config import Config
from daemon.fsutil import atomic_write, utc_now
from daemon.indexer import IndexedPhoto, IndexPool, PhotoError, engine_id_for
from daemon.store import FaceRecord, PhotoRecord, Store, StoreError
from daemon.store.db import DB_NAME

log = structlog.get_logger(__name__)

CHUNK = 128
"""Photos classified (stat + hash) before each round of indexing; bounds memory."""
MAX_TRANSIENT_ATTEMPTS = 5
"""A photo that failed for a passing reason is tried again at most this often."""

ProgressFn = Callable[[int], None]


@dataclass
class IndexReport:
    """What one round of indexing did."""

    indexed: int = 0
    skipped: int = 0
    moved: int = 0
    copied: int = 0
    failed: int = 0
    new_face_ids: list[int] = field(default_factory=list)

    def add(self, other: IndexReport) -> None:
        """Accumulate another report into this one."""
        self.indexed += other.indexed
        self.skipped += other.skipped
        self.moved += other.moved
        self.copied += other.copied
        self.failed += other.failed
        self.new_face_ids.extend(other.new_face_ids)


@dataclass(frozen=True)
class ClusterReport:
    """What a full re-clustering found."""

    faces: int
    people: int
    noise: int
    retired: int
    seconds: float


@dataclass(frozen=True)
class ScanReport:
    """Everything one ``facecluster scan`` did."""

    index: IndexReport
    removed: int
    cluster: ClusterReport
    albums: albums.AlbumReport
    seconds: float


@dataclass(frozen=True)
class PipelineStatus:
    """The store's view of the library, for ``facecluster status``."""

    engine: str
    photos: dict[str, int]
    faces: int
    people: int
    last_scan: str | None
    last_recluster: str | None
    labels_error: str | None

    def as_dict(self) -> dict:
        """Plain JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class PersonRow:
    """One line of ``facecluster people``."""

    id: int
    key: str
    name: str | None
    faces: int
    photos: int
    album: str | None
    """Absolute album folder, or None when hidden."""
    sample: str | None = None
    """A photo showing this person (their clearest face, never another member's)."""
    sample_face: str | None = None
    """That face's id, ``face-N``, as ``exclude`` takes it."""
    hidden: bool = False

    def as_dict(self) -> dict:
        """Plain JSON-ready form."""
        return asdict(self)


def content_hash(path: Path) -> str:
    """SHA-256 of the file's bytes: how a moved or duplicated photo is recognised."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _given_up(rec: PhotoRecord) -> bool:
    """A failed photo is not tried again until it changes: permanently broken, or out of
    retries for a passing error."""
    return not (rec.transient and rec.attempts < MAX_TRANSIENT_ATTEMPTS)


def _has_traces(cfg: Config) -> bool:
    """Whether an earlier store left anything behind (caches, an album manifest)."""
    return any(cfg.state_dir.glob("vectors-*")) or (
        cfg.albums_dir / ".facecluster" / "manifest.json"
    ).exists()


def _root_present(root: Path) -> bool:
    """Whether a watched folder is really there.

    An unmounted NFS/SMB share usually leaves its mount point behind as an empty folder;
    taking that for "every photo deleted" would empty the albums. So an empty root counts
    as absent: its photos stay known until it has content again (a user who really
    deletes every photo of a folder can remove it from ``watch``).
    """
    try:
        with os.scandir(root) as it:
            return any(True for _ in it)
    except OSError:
        return False


class Pipeline:
    """The stages of facecluster for one configuration.

    Use as a context manager; it holds the store open and, once indexing starts, a pool
    of worker processes that each keep the face models loaded.
    """

    def __init__(self, cfg: Config, *, create: bool = False) -> None:
        """Open the pipeline's store.

        ``create`` allows starting a store from nothing (scan, run, rebuild). Without it,
        a missing database where there are traces of an earlier one (vector caches, an
        album tree) is an error: the store was deleted, and reading commands must say so
        rather than report an empty library.
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
                hint="re-deriving from the photos; person ids start afresh, so check the "
                "ids in labels.toml against `facecluster people`",
            )
        self.store = Store.open(cfg.state_dir)
        self._pool: IndexPool | None = None
        self._index: cluster.FaceIndex | None = None
        self._index_ids: set[int] = set()
        self.labels = labels.Labels()
        self._people_content: tuple[dict, dict] = ({}, {})
        self.labels_error: str | None = None
        self.reload_labels()

    # -- life cycle -------------------------------------------------------------------

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers and close the store."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        self.store.close()

    def _workers(self) -> IndexPool:
        if self._pool is None:
            previous = self.store.get_meta("engine")
            if previous and previous != self.engine_id:
                log.warning(
                    "engine_changed",
                    old=previous,
                    new=self.engine_id,
                    hint="photos are re-embedded; faces of different engines are never compared",
                )
            self.store.set_meta("engine", self.engine_id)
            # Starting the pool loads the models in every worker: only once work arrives.
            self._pool = IndexPool(self.cfg).__enter__()
        return self._pool

    # -- discovering and indexing -------------------------------------------------------

    def discover(self) -> list[Path]:
        """Every photo under the watched folders that exist (missing ones are logged)."""
        roots = [r for r in self.cfg.watch if _root_present(r)]
        for r in self.cfg.watch:
            if r not in roots:
                log.warning("watched_folder_missing", path=str(r))
        return list(photos.walk_photos(roots, self.cfg))

    def _needs_work(self, st: os.stat_result, rec: PhotoRecord | None) -> bool:
        """Decide from ``stat`` alone (no read) whether a photo may have changed."""
        if rec is None or rec.size != st.st_size or rec.mtime_ns != st.st_mtime_ns:
            return True
        if rec.status == "failed":
            return not _given_up(rec)
        return rec.engine != self.engine_id

    def _classify(self, path: Path, report: IndexReport) -> tuple[Path, os.stat_result, str] | None:
        """Handle what needs no embedding; return what does.

        Unchanged photos are skipped by ``stat``; a changed ``stat`` with the same bytes
        (touched, or moved/duplicated from elsewhere) reuses the stored faces by content
        hash. Only genuinely new content goes on to the workers.
        """
        store = self.store
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
            and _given_up(rec)
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

    def index(self, paths: Iterable[Path], progress: ProgressFn | None = None) -> IndexReport:
        """Bring the store up to date for ``paths`` (new, changed, moved or touched photos).

        A photo that cannot be read is recorded as failed with its reason and the round
        goes on. ``progress`` is called with the number of photos handled since the last
        call.
        """
        report = IndexReport()
        for chunk in self._classified(paths, report, progress):
            known = {p: (st, digest) for p, st, digest in chunk}
            with self.store.batch():
                for path, result in self._workers().imap([p for p, _, _ in chunk]):
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
        """Forget photos that no longer exist, are ignored, or lie outside every root.

        Photos under a watched folder that is itself missing are kept: an unmounted
        share must not empty the albums.
        """
        present = [r for r in self.cfg.watch if _root_present(r)]
        absent = [r for r in self.cfg.watch if r not in present]
        gone: list[Path] = []
        for rec in self.store.iter_photos():
            p = rec.path
            if any(p.is_relative_to(r) for r in absent):
                continue
            if (
                not any(p.is_relative_to(r) for r in present)
                or not photos.is_photo(p, self.cfg)
                or not os.path.lexists(p)
            ):
                gone.append(p)
        if gone:
            log.info("photos_gone", count=len(gone))
        return self.remove(gone)

    # -- people -------------------------------------------------------------------------

    def cluster_params(self) -> cluster.ClusterParams:
        """The engine's measured defaults, with the config's overrides."""
        params = cluster.default_params(self.engine_id)
        c = self.cfg.clustering
        if c.eps > 0:
            params = cluster.with_eps(params, c.eps)
        if c.min_samples > 0:
            params = replace(params, min_samples=c.min_samples)
        return params

    def _excluded(self, faces: Sequence[FaceRecord] | None = None) -> set[tuple[int, int]]:
        """(face id, person id) pairs the user marked "not this person" in labels.toml.

        ``faces`` defaults to every face of the engine, read only when there are
        exclusions at all.
        """
        pairs: set[tuple[int, int]] = set()
        excluding = {pid: lab for pid, lab in self.labels.people.items() if lab.exclude}
        if not excluding:
            return pairs
        if faces is None:
            faces = self.store.faces(engine=self.engine_id)
        for f in faces:
            for pid, lab in excluding.items():
                if labels.excludes_face(lab, f.id) or labels.excludes_photo(
                    lab, f.path, self.cfg.watch
                ):
                    pairs.add((f.id, pid))
        return pairs

    def recluster(self) -> ClusterReport:
        """Re-cluster every face of the current engine; person ids stay stable."""
        t0 = time.monotonic()
        ids, vecs = self.store.vectors(self.engine_id)
        labels_ = cluster.cluster_faces(vecs, self.cluster_params())
        previous = self.store.face_persons(self.engine_id)
        named = {pid for pid, lab in self.labels.people.items() if lab.name}
        result = cluster.stable_ids(
            ids, labels_, previous, named, self._excluded(), self.store.new_person_id
        )
        self._index = None  # people changed: the neighbour index is rebuilt on demand
        with self.store.batch():
            self.store.set_persons(result.assignment)
            self.store.retire_people(result.retired)
            self.store.set_meta("last_recluster", utc_now())
        people = {p for p in result.assignment.values() if p is not None}
        report = ClusterReport(
            faces=len(ids),
            people=len(people),
            noise=sum(1 for p in result.assignment.values() if p is None),
            retired=len(result.retired),
            seconds=time.monotonic() - t0,
        )
        log.info("reclustered", **report.__dict__)
        return report

    def _face_index(self, leave_out: set[int]) -> cluster.FaceIndex:
        """The neighbour index over the known faces, built once per clustering.

        Rebuilding it per photo would cost seconds at a million faces; instead new faces
        are added to it as they are assigned, and a full re-clustering drops it.
        ``leave_out`` (the faces about to be voted on) is kept out when it is built.
        """
        if self._index is None:
            ids, vecs = self.store.vectors(self.engine_id)
            person = self.store.face_persons(self.engine_id)
            keep = [k for k, i in enumerate(ids) if int(i) not in leave_out]
            self._index = cluster.FaceIndex(vecs[keep], [person.get(int(ids[k])) for k in keep])
            self._index_ids = {int(ids[k]) for k in keep}
        return self._index

    def assign_incremental(self, face_ids: Sequence[int]) -> int:
        """Give new faces to existing people at once where their neighbours agree.

        A vote over each person's individual faces (not an averaged centre); faces with
        no clear majority wait for the next re-clustering. Returns how many joined.
        """
        candidates = [
            f
            for f in self.store.faces(ids=list(face_ids))
            if f.engine == self.engine_id and f.person_id is None  # copies keep theirs
        ]
        if not candidates:
            return 0
        index = self._face_index(leave_out={f.id for f in candidates})
        faces = [f for f in candidates if f.id not in self._index_ids]
        if not faces:
            return 0
        vecs = self.store.face_vectors([f.id for f in faces])
        votes = cluster.assign_new(index, vecs, self.cluster_params())
        excluded = self._excluded(faces)
        assignment = {
            f.id: pid
            for f, pid in zip(faces, votes, strict=True)
            if pid is not None and (f.id, pid) not in excluded
        }
        index.add(vecs, [assignment.get(f.id) for f in faces])
        self._index_ids.update(f.id for f in faces)
        if assignment:
            self.store.set_persons(assignment)
        return len(assignment)

    # -- labels and albums -------------------------------------------------------------

    def reload_labels(self) -> str | None:
        """Re-read labels.toml. On error the last good labels stay; returns the error."""
        self.labels, error = labels.load_live_labels(self.cfg.labels_file, self.cfg.state_dir)
        self.labels_error = str(error) if error else None
        if error:
            log.error("labels_invalid", file=str(self.cfg.labels_file), problems=error.problems)
        elif unknown := self.unknown_labelled():
            log.warning("labels_unknown_people", file=str(self.cfg.labels_file), problems=unknown)
        return self.labels_error

    def unknown_labelled(self) -> list[str]:
        """labels.toml entries naming a person the store never had (once it has people)."""
        known = [rec.id for rec in self.store.people()]
        return labels.unknown_people(self.labels, known) if known else []

    def plans(self) -> list[albums.AlbumPlan]:
        """What the album tree should hold now."""
        person_photos: dict[int, set[Path]] = defaultdict(set)
        person_faces: dict[int, list[albums.FaceRef]] = defaultdict(list)
        with_faces: set[Path] = set()
        for f in self.store.faces(engine=self.engine_id):
            with_faces.add(f.path)
            if f.person_id is None:
                continue
            person_photos[f.person_id].add(f.path)
            person_faces[f.person_id].append(
                albums.FaceRef(f.id, f.path, f.box, f.score, f.landmarks)
            )
        self._people_content = (person_photos, person_faces)
        no_face = {
            r.path
            for r in self.store.iter_photos()
            if r.status == "indexed" and r.engine == self.engine_id and r.path not in with_faces
        }
        return albums.plan_albums(
            person_photos, person_faces, self.labels, no_face, self.cfg.no_face, self.cfg.watch
        )

    def write_albums(self) -> albums.AlbumReport:
        """Make the album tree match the people, labels and config."""
        plans = self.plans()
        report = albums.write_albums(self.cfg.albums_dir, plans, self.cfg.album_mode)
        albums.write_pictures(self.cfg.albums_dir, plans, self.cfg.detection.max_pixels)
        self._write_people_file(self.people(plans))
        self.store.set_meta("last_albums", utc_now())
        log.info("albums_written", albums=len(plans), added=report.added, removed=report.removed)
        return report

    def people(self, plans: Sequence[albums.AlbumPlan] | None = None) -> list[PersonRow]:
        """Every person with faces, with their name, album folder and a sample photo."""
        if plans is None:
            plans = self.plans()
        folder_of = {pid: plan.folder for plan in plans for pid in plan.person_ids}
        # Counts and sample from the person's own faces minus exclusions (issue 10).
        own = roster.person_contents(*self._people_content, self.labels, self.cfg.watch)
        rows = []
        for rec in self.store.people():
            if rec.retired or rec.face_count == 0:
                continue
            lab = self.labels.label(rec.id)
            folder = folder_of.get(rec.id)
            mine = own.get(rec.id, roster.PersonContent((), ()))
            sample = mine.sample
            rows.append(
                PersonRow(
                    id=rec.id,
                    key=labels.person_key(rec.id),
                    name=lab.name,
                    faces=len(mine.faces),
                    photos=len(mine.photos),
                    album=str(self.cfg.albums_dir / folder) if folder else None,
                    sample=str(sample.path) if sample else None,
                    sample_face=f"face-{sample.face_id}" if sample else None,
                    hidden=lab.hidden,
                )
            )
        return rows

    def _write_people_file(self, rows: Sequence[PersonRow]) -> None:
        """Tell the user who is new, without ever touching their labels.toml.

        ``state_dir/people.toml`` lists the unnamed people as ready-to-copy lines.
        """
        lines = [
            "# Generated by facecluster; rewritten after every album update. Do not edit:",
            "# copy a line into labels.toml (under [people]) and write the person's name.",
            "",
        ]
        for r in sorted(rows, key=lambda r: -r.faces):
            if r.name or r.hidden or not r.sample:
                continue  # named, hidden on purpose, or every face excluded: nothing to do
            lines.append(f"# {r.faces} faces in {r.photos} photos, e.g. {r.sample}")
            lines.append(f'{r.key} = ""')
        target = self.cfg.state_dir / "people.toml"
        try:
            text = "\n".join(lines) + "\n"
            atomic_write(target, text.encode("utf-8", errors="surrogateescape"))
        except OSError as e:
            log.warning("people_file_not_written", path=str(target), error=str(e))

    def find_album(self, who: str) -> str | None:
        """The album folder for a folder name, a person's name, or an id like person-0007."""
        plans = self.plans()
        for plan in plans:
            if plan.folder == who:
                return plan.folder
        for row in self.people(plans):
            if who in (row.key, row.name, str(row.id)) and row.album:
                return Path(row.album).name
        return None

    # -- the whole thing ---------------------------------------------------------------

    def scan(self, progress: Callable[[int | None], ProgressFn] | None = None) -> ScanReport:
        """Index every watched folder, forget what vanished, re-cluster, write albums.

        ``progress``, if given, is called once with the number of photos found and
        returns the per-photo callback.
        """
        t0 = time.monotonic()
        found = self.discover()
        tick = progress(len(found)) if progress else None
        report = self.index(found, tick)
        removed = self.sync_missing()
        clustered = self.recluster()
        written = self.write_albums()
        self.store.set_meta("last_scan", utc_now())
        return ScanReport(report, removed, clustered, written, time.monotonic() - t0)

    def status(self) -> PipelineStatus:
        """Counts and timestamps for ``facecluster status``."""
        counts = self.store.counts()
        return PipelineStatus(
            engine=self.engine_id,
            photos={"indexed": counts.photos_indexed, "failed": counts.photos_failed},
            faces=counts.faces,
            people=counts.people,
            last_scan=self.store.get_meta("last_scan"),
            last_recluster=self.store.get_meta("last_recluster"),
            labels_error=self.labels_error,
        )
