"""What the web page shows, read from the store and labels.toml; it writes neither.

The store is opened read-only (:meth:`Store.open_readonly`), so the page can run beside
the service (or without it) and can never create or change a store. Lists that cost a
pass over every face (people with counts, each person's centre for "may be the same")
are cached until the store's ``data_version`` says another connection committed.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import structlog

from daemon.albums.pictures import rank_faces
from daemon.albums.plan import FaceRef
from daemon.cluster.similar import LookAlike, nearest_people
from daemon.config import Config
from daemon.people import labels, roster
from daemon.people.naming import labels_digest
from daemon.store import FaceRecord, PhotoRecord, Store, StoreError

log = structlog.get_logger(__name__)

T = TypeVar("T")
SAMPLE_FACES = 8
"""Faces per person whose centre "may be the same" compares (all of them is slow)."""
LOOK_ALIKES = 6
"""People listed as "may be the same" on a person's page."""
CENTRES_MAX_AGE = 300.0
"""Seconds the "may be the same" centres are kept after the store changed."""


class NotFound(LookupError):
    """No such person, face or photo (or one the page may not show)."""


@dataclass(frozen=True)
class PersonView:
    """One person as listed: id, label and counts."""

    id: int
    key: str
    name: str | None
    hidden: bool
    faces: int
    """Their own faces, after "not this person" (as ``facecluster people`` counts)."""
    photos: int
    excluded: int
    """Entries in the person's "not this person" list."""
    stored: int
    """Faces the store gives them, excluded ones too until the next clustering moves
    them: what the person's page lists."""
    members: tuple[int, ...] = ()
    """Every id shown as this one person: people who share a name share an album, so
    the page shows them as one (``id`` is the lowest); just ``(id,)`` otherwise."""
    member_faces: tuple[int, ...] = ()
    """Each member's stored faces, in ``members`` order (to page through them)."""

    @property
    def keys(self) -> str:
        """The members' keys, e.g. ``person-0003 + person-0007``."""
        return " + ".join(labels.person_key(i) for i in self.members)


@dataclass(frozen=True)
class Page:
    """One page of a longer list."""

    items: list
    number: int
    pages: int
    total: int


def paginate(items: list[T], number: int, size: int) -> Page:
    """Page ``number`` (1-based, clamped into range) of ``items``."""
    pages = max(1, -(-len(items) // size))
    number = min(max(1, number), pages)
    return Page(items[(number - 1) * size : number * size], number, pages, len(items))


@dataclass(frozen=True)
class LabelsState:
    """labels.toml as last read: the labels in force for display, or the error."""

    labels: labels.Labels
    """The file's labels, or the last good ones while it is broken."""
    error: str | None
    digest: str
    """:func:`daemon.people.naming.labels_digest` of the file taken before it was read."""


class Library:
    """Read access for the page: people, faces, photos, status. Thread-safe."""

    def __init__(self, cfg: Config, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self._clock = clock
        self._centres_at: tuple[int, float, dict[int, list[LookAlike]]] | None = None
        self._store: Store | None = None
        self._lock = threading.Lock()
        self._cache: dict[str, object] = {}
        self._version: int | None = None
        self._labels: LabelsState | None = None
        self._roots = [os.path.realpath(r) for r in cfg.watch]

    # -- the store ------------------------------------------------------------------

    @property
    def store(self) -> Store:
        """The read-only store, opened on first use (the service may create it later)."""
        with self._lock:
            if self._store is None:
                self._store = Store.open_readonly(self.cfg.state_dir)
            return self._store

    def close(self) -> None:
        """Close the store."""
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    def _cached(self, key: str, build: Callable[[], T]) -> T:
        """``build()``'s value, kept until another connection commits to the store."""
        version = self.store.data_version()
        if version != self._version:
            self._cache = {}  # everything may have changed: drop it all, not key by key
            self._version = version
        if key in self._cache:
            return self._cache[key]  # type: ignore[return-value]
        value = build()
        self._cache[key] = value
        return value

    # -- labels ---------------------------------------------------------------------

    def labels(self, digest: str) -> LabelsState:
        """The labels to show, parsed once per ``digest`` of the file's bytes (taken by
        the caller before this reads the file). A broken file shows its error beside the
        last good labels, the ones the service keeps in force (read, never written here)."""
        hit = self._labels
        if hit is not None and hit.digest == digest:
            return hit
        try:
            state = LabelsState(labels.load_labels(self.cfg.labels_file), None, digest)
        except labels.LabelsError as e:
            state = LabelsState(labels.load_last_good(self.cfg.state_dir), str(e), digest)
        if labels_digest(self.cfg.labels_file) == digest:  # not changed while being read
            self._labels = state
        return state

    # -- people ---------------------------------------------------------------------

    def _counts(self) -> list[tuple[int, int, int]]:
        """(id, faces, photos) of every live person with faces, largest first."""
        rows = [(p.id, p.face_count, p.photo_count) for p in self.store.people()
                if not p.retired and p.face_count]
        rows.sort(key=lambda r: (-r[1], r[0]))
        return rows

    def _own(self, state: LabelsState) -> dict[int, roster.PersonContent]:
        """What is really theirs, for the people with "not this person" entries.

        The album planner's own rules (:mod:`daemon.people.roster`) decide; only these people's
        faces are read, since everyone else's counts are the store's.
        """
        def build() -> dict[int, roster.PersonContent]:
            excluding = [pid for pid, lab in state.labels.people.items() if lab.exclude]
            photos: dict[int, set[Path]] = {}
            faces: dict[int, list[FaceRef]] = {}
            for pid in excluding:
                for f in self.store.faces(person_id=pid):
                    photos.setdefault(pid, set()).add(f.path)
                    faces.setdefault(pid, []).append(
                        FaceRef(f.id, f.path, f.box, f.score, f.landmarks))
            own = roster.person_contents(photos, faces, state.labels, self.cfg.watch)
            return {pid: own.get(pid, roster.PersonContent((), ())) for pid in faces}

        return self._cached(f"own:{state.digest}", build)

    def _photos_of(self, pid: int, state: LabelsState) -> set[Path]:
        """The photos that are really ``pid``'s (after "not this person")."""
        mine = self._own(state).get(pid)
        if mine is not None:
            return set(mine.photos)
        return {f.path for f in self.store.faces(person_id=pid)}

    def _single(self, state: LabelsState) -> list[PersonView]:
        """Every person with faces on their own, largest first."""
        lab, own = state.labels, self._own(state)
        out = []
        for pid, stored, in_photos in self._cached("counts", self._counts):
            label = lab.label(pid)
            mine = own.get(pid)
            faces, photos = (len(mine.faces), len(mine.photos)) if mine else (stored, in_photos)
            out.append(PersonView(pid, labels.person_key(pid), label.name, label.hidden,
                                  faces, photos, len(label.exclude), stored, (pid,), (stored,)))
        return out

    def _merged(self, group: list[PersonView], state: LabelsState) -> PersonView:
        """One view of people who share a name: counted as their album is (a photo
        showing two of them counts once)."""
        photos: set[Path] = set()
        for p in group:
            photos |= self._photos_of(p.id, state)
        first = group[0]
        return PersonView(first.id, first.key, first.name, False,
                          sum(p.faces for p in group), len(photos),
                          sum(p.excluded for p in group), sum(p.stored for p in group),
                          tuple(p.id for p in group), tuple(p.stored for p in group))

    def people(self, state: LabelsState) -> list[PersonView]:
        """Everyone with faces, largest first; people who share a name (and are not
        hidden) are one entry, as they are one album (built once per store and labels)."""
        def build() -> list[PersonView]:
            single = self._single(state)
            groups: dict[str, list[PersonView]] = {}
            for p in sorted(single, key=lambda p: p.id):
                if p.name and not p.hidden:
                    groups.setdefault(p.name, []).append(p)
            merged = {g[0].id: self._merged(g, state) for g in groups.values() if len(g) > 1}
            inside = {pid for v in merged.values() for pid in v.members[1:]}
            out = [merged.get(p.id, p) for p in single if p.id not in inside]
            out.sort(key=lambda p: (-p.faces, p.id))
            return out

        return self._cached(f"people:{state.digest}", build)

    def known_ids(self) -> frozenset[int]:
        """The ids the store knows (retired ones excluded): the only ones an edit may
        name, as on the command line."""
        return self._cached("known", lambda: frozenset(
            p.id for p in self.store.people() if not p.retired))

    def person(self, person_id: int, state: LabelsState) -> PersonView:
        """The person (or merged people) ``person_id`` belongs to; :class:`NotFound` if
        they have no faces."""
        for p in self.people(state):
            if person_id in p.members:
                return p
        raise NotFound(f"no person {person_id}")

    def members(self, person_id: int, state: LabelsState) -> tuple[int, ...]:
        """Every id shown as one person with ``person_id`` (people who share a name);
        just ``(person_id,)`` for an id with no faces left."""
        try:
            return self.person(person_id, state).members
        except NotFound:
            return (person_id,)

    def person_faces(self, person_id: int, offset: int, limit: int) -> list[FaceRecord]:
        """A page of one id's faces."""
        return self.store.person_faces(person_id, offset, limit)

    def shown_faces(self, person: PersonView, offset: int, limit: int) -> list[FaceRecord]:
        """A page of a person's faces as listed: each member's in turn, for merged people."""
        out: list[FaceRecord] = []
        for pid, count in zip(person.members, person.member_faces, strict=True):
            if offset >= count:
                offset -= count
                continue
            out += self.person_faces(pid, offset, limit - len(out))
            offset = 0
            if len(out) >= limit:
                break
        return out

    def best_faces(self, person_id: int, state: LabelsState, limit: int = 1) -> list[int]:
        """Ids of the person's best faces (never one they are marked not to be), as the
        album pictures rank them; all members' for merged people."""
        def rank() -> list[int]:
            refs: list[FaceRef] = []
            for pid in self.members(person_id, state):
                mine = self._own(state).get(pid)
                if mine is not None:
                    refs += mine.faces
                else:
                    refs += [FaceRef(f.id, f.path, f.box, f.score, f.landmarks)
                             for f in self.store.faces(person_id=pid)]
            return [r.face_id for r in rank_faces(refs)[:limit]]

        return self._cached(f"best:{person_id}:{limit}:{state.digest}", rank)

    def _look_alikes(self) -> dict[int, list[LookAlike]]:
        """Each person's look-alikes by :func:`daemon.cluster.nearest_people` — the rule
        of ``people --json`` — over up to SAMPLE_FACES faces each, to stay fast."""
        by_person = self.store.person_samples(SAMPLE_FACES)
        ids = sorted(by_person)
        sample = [f for pid in ids for f in by_person[pid]]
        owners = [pid for pid in ids for _ in by_person[pid]]
        if not sample:
            return {}
        return nearest_people(owners, self.store.face_vectors(sample), k=LOOK_ALIKES)

    def similar_people(self, person: PersonView,
                       state: LabelsState) -> list[tuple[PersonView, float]]:
        """Who may be the same as ``person`` (all its members'), nearest first; others
        who share a name are one entry, as on the people page."""
        nearest: dict[int, tuple[PersonView, float]] = {}
        for pid in person.members:
            for other, distance in self.similar(pid):
                try:
                    view = self.person(other, state)
                except NotFound:
                    continue
                if view.id != person.id and (view.id not in nearest
                                             or distance < nearest[view.id][1]):
                    nearest[view.id] = (view, distance)
        return sorted(nearest.values(), key=lambda vd: (vd[1], vd[0].id))

    def faces_in_photo(self, person_id: int, path: Path) -> list[FaceRecord]:
        """The person's faces in one photo."""
        return [f for f in self.store.faces(person_id=person_id) if f.path == path]

    def similar(self, person_id: int) -> list[tuple[int, float]]:
        """People who may be the same as this one: (id, distance), nearest first.

        Computing them takes seconds at 500k faces, and a service that is indexing
        commits every few seconds: they are rebuilt only once the store changed and
        they are older than CENTRES_MAX_AGE (a suggestion list may lag a few minutes).
        """
        now = self._clock()
        hit = self._centres_at
        if hit is None or (hit[0] != self.store.data_version()
                           and now - hit[1] >= CENTRES_MAX_AGE):
            version = self.store.data_version()
            hit = self._centres_at = (version, now, self._look_alikes())
        return [(a.person_id, a.distance) for a in hit[2].get(person_id, [])]

    # -- faces and photos -------------------------------------------------------------

    def face(self, face_id: int) -> FaceRecord:
        """A face whose photo lies in a watched folder; :class:`NotFound` otherwise."""
        found = self.store.faces(ids=[face_id])
        if not found:
            raise NotFound(f"no face {face_id}")
        face = found[0]
        self.check_inside(face.path)
        return face

    def check_inside(self, path: Path) -> str:
        """The real path of a photo, if it lies inside a watched folder; else NotFound.

        The store only holds photos found in watched folders, but a folder may since
        have gained a symlink to elsewhere: the page never follows one out.
        """
        real = os.path.realpath(path)
        for root in self._roots:
            if real.startswith(root.rstrip(os.sep) + os.sep):
                return real
        log.warning("web_photo_outside_roots", path=str(path))
        raise NotFound("photo is not inside a watched folder")

    # -- status ---------------------------------------------------------------------

    def failed(self, limit: int = 200) -> list[PhotoRecord]:
        """The latest photos that failed, with their reasons."""
        return self.store.failed_photos(limit)

    def counts(self) -> dict[str, int]:
        """Photos, faces and people."""
        c = self.store.counts()
        return {"photos indexed": c.photos_indexed, "photos failed": c.photos_failed,
                "faces": c.faces, "people": c.people}


__all__ = ["Library", "NotFound", "Page", "PersonView", "StoreError", "paginate"]
