"""Stable person ids across re-clusterings, and instant assignment of new faces.

Cluster labels from DBSCAN are arbitrary numbers that change on every run. Users see
people as ``person-0007`` folders and name them in ``labels.toml``, so a re-clustering
must map its clusters onto the existing person ids rather than renumber the world.

Rules of :func:`stable_ids` (in order of precedence):

1. *Exclusions*: a ``(face_id, person_id)`` pair in ``excluded`` is never assigned.
2. *Named people keep their faces*: a face previously in a named person stays there,
   whatever the clustering says now (unless excluded). The clustering can add faces to a
   named person but never take them away or move them to somebody else.
3. *Matching*: each cluster takes the previous person it shares most faces with; each
   person goes to at most one cluster; larger overlaps are matched first, ties go to the
   older (smaller) id. A cluster matching nobody gets ``new_id()``.
4. *Noise is sticky*: a face DBSCAN now calls noise keeps its previous person if that
   person still exists after this run. A density change at the edge of a cluster (a few
   faces added elsewhere, a slightly different eps) should not make photos vanish from
   albums and come back; a face whose person dissolved entirely becomes unassigned. Not
   so a face given its person at once, between two clusterings (``provisional``): the
   clustering's word is final for it.
5. Previous people left with no face are *retired*; their ids are never reused (the
   store hands out ids) so a retired ``person-0007`` can never come back as a stranger.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass

import faiss
import numpy as np

from daemon.cluster.dbscan import NOISE, ClusterParams
from daemon.cluster.neighbours import IndexParams, as_unit_float32, build_index, search


@dataclass(frozen=True)
class StableResult:
    """Outcome of :func:`stable_ids`."""

    assignment: dict[int, int | None]
    """Every input face id -> its person id, or None (unassigned / noise)."""
    retired: set[int]
    """Previous person ids that no longer have any face."""


# Over 60 lines: the rules apply in a fixed order over shared maps (module docstring).
def stable_ids(
    face_ids: Sequence[int],
    labels: Sequence[int] | np.ndarray,
    previous: Mapping[int, int],
    named: Set[int],
    excluded: Set[tuple[int, int]],
    new_id: Callable[[], int],
    photos: Mapping[int, int] | None = None,
    provisional: Set[int] = frozenset(),
) -> StableResult:
    """Map fresh cluster labels onto existing person ids (rules in the module docstring).

    ``face_ids[i]`` has cluster ``labels[i]`` (-1 = noise). ``previous`` maps face id to
    its person before this run (faces without a person are absent). ``named`` are the
    person ids the user gave a name to. ``new_id`` is called once per new person, in
    order of each new cluster's smallest face id, so runs are reproducible.

    ``photos`` (face id -> photo id) adds the rule that a person never holds two faces
    of one photo: when pinning, clustering and sticky noise would do that, the pinned
    face wins, then the clustered one, then the smaller face id; the others are
    unassigned.

    ``provisional`` faces got their previous person at once, between two clusterings
    (:func:`assign_new`, :mod:`.local`): they count for matching clusters to persons but
    are not sticky noise -- the full clustering's word is final for them, so a hasty
    decision cannot outlive it.
    """
    face_ids = [int(f) for f in face_ids]
    labels = [int(c) for c in np.asarray(labels).ravel()]
    if len(face_ids) != len(labels):
        raise ValueError(f"{len(face_ids)} face ids but {len(labels)} labels")
    if len(set(face_ids)) != len(face_ids):
        raise ValueError("face ids must be unique")

    assignment: dict[int, int | None] = {}
    pinned: set[int] = set()
    for f in face_ids:
        p = previous.get(f)
        if p is not None and p in named and (f, p) not in excluded:
            assignment[f] = p
            pinned.add(f)

    members: dict[int, list[int]] = defaultdict(list)
    for f, c in zip(face_ids, labels, strict=True):
        if c != NOISE:
            members[c].append(f)

    overlap: Counter[tuple[int, int]] = Counter()
    for c, faces in members.items():
        for f in faces:
            p = previous.get(f)
            if p is not None and (f, p) not in excluded:
                overlap[(c, p)] += 1
    owner: dict[int, int] = {}
    taken: set[int] = set()
    for (c, p), _ in sorted(overlap.items(), key=lambda item: (-item[1], item[0][1], item[0][0])):
        if c not in owner and p not in taken:
            owner[c] = p
            taken.add(p)
    for c in sorted(members, key=lambda c: min(members[c])):
        if c not in owner:
            owner[c] = new_id()

    for c, faces in members.items():
        p = owner[c]
        for f in faces:
            if f not in pinned:
                assignment[f] = None if (f, p) in excluded else p

    alive = set(owner.values()) | {assignment[f] for f in pinned}
    for f, c in zip(face_ids, labels, strict=True):
        if c == NOISE and f not in pinned:
            p = previous.get(f)
            keep = (p is not None and p in alive and (f, p) not in excluded
                    and f not in provisional)
            assignment[f] = p if keep else None

    if photos is not None:
        clustered = {f for f, c in zip(face_ids, labels, strict=True) if c != NOISE}
        _one_face_per_photo(assignment, photos, pinned, clustered)
    left = {p for p in assignment.values() if p is not None}
    retired = {p for p in previous.values() if p not in left}
    return StableResult(assignment=assignment, retired=retired)


def _one_face_per_photo(assignment: dict[int, int | None], photos: Mapping[int, int],
                        pinned: Set[int], clustered: Set[int]) -> None:
    """Unassign all but one face of each (person, photo); see :func:`stable_ids`."""
    holders: dict[tuple[int, int], list[int]] = defaultdict(list)
    for f, p in assignment.items():
        if p is not None and f in photos:
            holders[(p, int(photos[f]))].append(f)
    for faces in holders.values():
        if len(faces) < 2:
            continue
        faces.sort(key=lambda f: (f not in pinned, f not in clustered, f))
        for f in faces[1:]:
            if f not in pinned:
                assignment[f] = None


class FaceIndex:
    """A FAISS index over the already clustered faces and their person ids.

    Unassigned (noise) faces are kept in it too, with person id None: a new face whose
    neighbourhood is mostly unassigned faces is in an undecided region and should wait.
    With ``photo_ids`` it also knows which people each photo already shows, so that a
    vote never gives a person a second face of one photo; with ``face_ids`` it can name
    the faces near a new one (for :mod:`.local`) and move them to a person later.
    """

    def __init__(self, vectors: np.ndarray, person_ids: Sequence[int | None],
                 index_params: IndexParams | None = None,
                 photo_ids: Sequence[int] | None = None,
                 face_ids: Sequence[int] | None = None) -> None:
        v = as_unit_float32(vectors)
        if len(v) != len(person_ids):
            raise ValueError(f"{len(v)} vectors but {len(person_ids)} person ids")
        self._index: faiss.Index = build_index(v, index_params)
        self._persons = np.empty(0, np.int64)
        self._photos = np.empty(0, np.int64)
        self._faces = np.empty(0, np.int64)
        self._shown: dict[int, set[int]] = defaultdict(set)
        self._append(len(v), person_ids, photo_ids, face_ids)

    def _append(self, n: int, person_ids: Sequence[int | None],
                photo_ids: Sequence[int] | None, face_ids: Sequence[int] | None) -> None:
        def column(values: Iterable[int | None] | None) -> np.ndarray:
            if isinstance(values, np.ndarray):  # no None in it: no Python loop (1M faces)
                return values.astype(np.int64)
            out = np.full(n, NOISE, np.int64)
            if values is not None:
                out[:] = [NOISE if x is None else int(x) for x in values]
            return out

        for name, values in (("photo", photo_ids), ("face", face_ids)):
            if values is not None and len(values) != n:
                raise ValueError(f"{n} vectors but {len(values)} {name} ids")
        self._persons = np.r_[self._persons, column(person_ids)]
        self._photos = np.r_[self._photos, column(photo_ids)]
        self._faces = np.r_[self._faces, column(face_ids)]
        if photo_ids is not None:
            for ph, p in zip(photo_ids, person_ids, strict=True):
                if p is not None:
                    self._shown[int(ph)].add(int(p))

    def people_in(self, photo_id: int) -> set[int]:
        """The people who already have a face in this photo (as far as the index knows)."""
        return self._shown.get(int(photo_id), set())

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, vectors: np.ndarray, person_ids: Sequence[int | None],
            photo_ids: Sequence[int] | None = None,
            face_ids: Sequence[int] | None = None) -> None:
        """Add faces (e.g. the ones just assigned) so later new faces can vote with them."""
        v = as_unit_float32(vectors)
        if len(v) != len(person_ids):
            raise ValueError(f"{len(v)} vectors but {len(person_ids)} person ids")
        self._index.add(v)
        self._append(len(v), person_ids, photo_ids, face_ids)

    def neighbours(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(distances [m, k], person ids [m, k]) of each query's k nearest known faces.

        Missing neighbours have distance inf and person -1.
        """
        dist, idx = search(self._index, queries, k)
        persons = np.where(idx >= 0, self._persons[np.clip(idx, 0, None)], NOISE)
        return dist, persons

    def faces_near(self, queries: np.ndarray, k: int, radius: float) -> np.ndarray:
        """The ids of the faces among each query's ``k`` nearest within ``radius`` (sorted,
        unique; faces added without an id are left out)."""
        dist, idx = search(self._index, queries, k)
        hit = idx[(idx >= 0) & (dist <= radius)]
        faces = self._faces[hit]
        return np.unique(faces[faces >= 0])

    def move(self, face_ids: Iterable[int], person_id: int) -> None:
        """Record that these known faces now belong to ``person_id``."""
        at = np.flatnonzero(np.isin(self._faces, np.fromiter(face_ids, np.int64)))
        self._persons[at] = person_id
        for ph in self._photos[at]:
            if ph >= 0:
                self._shown[int(ph)].add(int(person_id))


def assign_new(index: FaceIndex, new_vectors: np.ndarray, params: ClusterParams,
               photo_ids: Sequence[int] | None = None) -> list[int | None]:
    """Person id for each new face by a vote of its known neighbours within eps, else None.

    Votes come from individual faces (not a person's averaged centre), so a person whose
    photos span years still attracts a face close to any of them, and two similar-looking
    people are kept apart by whoever's faces are actually nearest. None means: no clear
    majority yet; the face waits for the next full re-clustering.

    The rule mirrors DBSCAN's: the winner needs at least ``min_samples - 1`` of its faces
    within ``eps`` (the new face would be a core point of that person) and at least
    ``vote_share`` of all known faces within ``eps`` (unassigned ones included, when the
    index holds them), looking at the ``vote_k`` nearest.

    Two faces of one photo are two people: with ``photo_ids`` (one per new face), a
    face never joins a person who already has a face in its photo -- in the index or
    given to an earlier face of this call. If that person wins the vote, the face waits
    (the runner-up would be a guess).
    """
    v = as_unit_float32(new_vectors)
    if photo_ids is not None and len(photo_ids) != len(v):
        raise ValueError(f"{len(v)} vectors but {len(photo_ids)} photo ids")
    if len(v) == 0 or len(index) == 0:
        return [None] * len(v)
    dist, persons = index.neighbours(v, params.vote_k)
    min_votes = max(1, params.min_samples - 1)
    given: dict[int, set[int]] = defaultdict(set)
    out: list[int | None] = []
    for i, (d, p) in enumerate(zip(dist, persons, strict=True)):
        near = p[d <= params.eps]
        voted = near[near != NOISE]
        if len(voted) == 0:
            out.append(None)
            continue
        ids, counts = np.unique(voted, return_counts=True)
        best = int(np.argmax(counts))
        ok = counts[best] >= min_votes and counts[best] >= params.vote_share * len(near)
        winner = int(ids[best]) if ok else None
        if winner is not None and photo_ids is not None:
            ph = int(photo_ids[i])
            if winner in index.people_in(ph) or winner in given[ph]:
                winner = None
            else:
                given[ph].add(winner)
        out.append(winner)
    return out
