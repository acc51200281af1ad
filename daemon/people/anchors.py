"""Rules that keep the people and faces a user referred to on the same humans.

Identity, part 1 of 3 (its rules); the file is :mod:`daemon.store.anchors`,
the use :mod:`daemon.people.identity`.

Face and person numbers are regenerated whenever the store is (``rebuild``, a deleted
store, an engine change that re-detects every face). What does not change is the photo
itself and where a face sits in it, so a face is anchored by a :class:`FaceKey`: the
photo's content hash plus the face box in full-resolution pixels of the upright photo.

- :func:`match_keys` finds today's faces for anchored keys: same photo bytes (wherever
  the photo now lives), boxes whose centres are close for their size. Two detectors box
  one face differently (dlib's HOG box is tighter than YuNet's: centre offsets up to a
  quarter of the face size on the shared photos), while neighbouring faces in a group
  photo sit at least about 0.7 face sizes apart, hence :data:`CENTRE_TOLERANCE`.
- :func:`anchored_ids` wraps :func:`daemon.cluster.stable.stable_ids`: anchored faces
  count as their person's previous faces (so an anchored person that splits keeps its id
  in the part with most anchored faces), and a cluster holding anchored faces of two
  different people (different names) is first cut between them, each face going to the
  person of its nearest anchored face. Such a cluster is reported as a
  :class:`SharedCluster` instead of handing everyone to the larger person.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass

import numpy as np

from daemon.cluster.dbscan import NOISE
from daemon.cluster.neighbours import as_unit_float32
from daemon.cluster.stable import stable_ids
from daemon.store.anchors import Box, FaceKey

CENTRE_TOLERANCE = 0.4
"""Largest centre distance, in mean face sizes, between two boxes of one face."""
SIZE_RATIO = 2.0
"""Largest ratio between the sizes (square root of area) of two boxes of one face."""
_ROWS = 4096  # faces per block when finding nearest anchored faces

@dataclass(frozen=True)
class PlacedFace:
    """A face in the store today: its id, which photo row it is in, and its key."""

    id: int
    photo_id: int
    key: FaceKey


@dataclass(frozen=True)
class SharedCluster:
    """One cluster that holds anchored faces of people the user keeps apart."""

    people: tuple[int, ...]
    """The anchored person ids found in it, ascending."""
    faces: int
    """How many faces the cluster had before it was cut between them."""


@dataclass(frozen=True)
class AnchoredResult:
    """Outcome of :func:`anchored_ids`."""

    assignment: dict[int, int | None]
    """Every input face id -> its person id, or None."""
    retired: set[int]
    """Previous person ids left without a face."""
    shared: list[SharedCluster]
    """Clusters that were cut between anchored people (to report)."""


def box_distance(a: Box, b: Box) -> float | None:
    """Centre distance in mean face sizes, or None when the sizes are too different."""
    sa, sb = math.sqrt(max(a[2], 0) * max(a[3], 0)), math.sqrt(max(b[2], 0) * max(b[3], 0))
    if sa <= 0 or sb <= 0 or max(sa, sb) > SIZE_RATIO * min(sa, sb):
        return None
    dx = (a[0] + a[2] / 2) - (b[0] + b[2] / 2)
    dy = (a[1] + a[3] / 2) - (b[1] + b[3] / 2)
    return math.hypot(dx, dy) / ((sa + sb) / 2)


def match_keys(keys: Sequence[FaceKey], faces: Iterable[PlacedFace]) -> dict[int, list[int]]:
    """For each index into ``keys``, today's faces that are that face.

    A key matches in every photo with its content hash (byte-identical copies each show
    the face), at most one face per photo and each face for at most one key: the closest
    pairs are taken first. Keys with no match are absent.
    """
    by_hash: dict[str, list[int]] = defaultdict(list)
    for i, k in enumerate(keys):
        by_hash[k.photo].append(i)
    by_photo: dict[int, list[PlacedFace]] = defaultdict(list)
    for f in faces:
        if f.key.photo in by_hash:
            by_photo[f.photo_id].append(f)
    out: dict[int, list[int]] = defaultdict(list)
    for placed in by_photo.values():
        pairs = []
        for f in placed:
            for i in by_hash[f.key.photo]:
                d = box_distance(keys[i].box, f.key.box)
                if d is not None and d <= CENTRE_TOLERANCE:
                    pairs.append((d, i, f.id))
        used_keys: set[int] = set()
        used_faces: set[int] = set()
        for _, i, face_id in sorted(pairs):
            if i not in used_keys and face_id not in used_faces:
                used_keys.add(i)
                used_faces.add(face_id)
                out[i].append(face_id)
    return {i: sorted(ids) for i, ids in out.items()}


def _nearest(vectors: np.ndarray, rows: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """Index into ``refs`` of the nearest reference face for each of ``rows``."""
    ref_vecs = as_unit_float32(vectors[refs])
    out = np.empty(len(rows), dtype=np.int64)
    for start in range(0, len(rows), _ROWS):
        block = as_unit_float32(vectors[rows[start : start + _ROWS]])
        out[start : start + len(block)] = np.argmax(block @ ref_vecs.T, axis=1)
    return out


def separate_shared(
    face_ids: Sequence[int],
    labels: Sequence[int] | np.ndarray,
    vectors: np.ndarray,
    anchored: Mapping[int, int],
    group_of: Mapping[int, Hashable],
) -> tuple[np.ndarray, list[SharedCluster]]:
    """Cut every cluster that holds anchored faces of more than one group.

    ``anchored`` maps face id -> the person it is anchored to; ``group_of`` maps the
    person ids the user referred to -> a group (people with one name are one group).
    In a cluster with anchored faces of two or more groups, each face goes to the group
    of its nearest anchored face (cosine on the embeddings); each group's part gets a
    fresh label. Returns the new labels and one :class:`SharedCluster` per cut cluster.
    """
    labels = np.asarray(labels, dtype=np.int64).ravel().copy()
    # Only clusters holding steering faces can be shared; find them without a pass in
    # Python over every face (a million at the top end).
    ids = np.asarray(face_ids, dtype=np.int64)
    steering = np.array(sorted(f for f, p in anchored.items() if p in group_of), dtype=np.int64)
    ref_rows = np.nonzero(np.isin(ids, steering))[0]
    groups_in: dict[int, set[Hashable]] = defaultdict(set)
    for r in ref_rows:
        if labels[r] != NOISE:
            groups_in[int(labels[r])].add(group_of[anchored[int(ids[r])]])
    next_label = int(labels.max()) + 1 if len(labels) else 0
    shared: list[SharedCluster] = []
    for c in sorted(c for c, groups in groups_in.items() if len(groups) > 1):
        rows = np.nonzero(labels == c)[0]
        refs = ref_rows[labels[ref_rows] == c]
        ref_group = [group_of[anchored[int(ids[r])]] for r in refs]
        own = dict(zip(refs.tolist(), ref_group, strict=True))
        nearest = _nearest(vectors, rows, refs)
        label_of: dict[Hashable, int] = {}
        for row, k in zip(rows.tolist(), nearest, strict=True):
            g = own.get(row, ref_group[int(k)])
            if g not in label_of:
                label_of[g] = next_label
                next_label += 1
            labels[row] = label_of[g]
        people = tuple(sorted({anchored[int(ids[r])] for r in refs}))
        shared.append(SharedCluster(people=people, faces=len(rows)))
    return labels, shared


def anchored_ids(
    face_ids: Sequence[int],
    labels: Sequence[int] | np.ndarray,
    vectors: np.ndarray,
    previous: Mapping[int, int],
    named: Set[int],
    excluded: Set[tuple[int, int]],
    new_id: Callable[[], int],
    anchored: Mapping[int, int],
    group_of: Mapping[int, Hashable],
    photos: Mapping[int, int] | None = None,
    provisional: Set[int] = frozenset(),
) -> AnchoredResult:
    """:func:`stable_ids` with anchored faces standing in for lost previous persons.

    ``anchored`` (face id -> person id, from :func:`match_keys`) fills in for faces the
    store has no person for (a re-derived store, a re-embedded photo); where the store
    still knows the face's person, that wins. Clusters shared by anchored faces of
    several groups are cut first (:func:`separate_shared`).
    """
    known = {int(f) for f in face_ids}
    merged = {f: p for f, p in anchored.items() if f in known}
    merged.update(previous)
    steering = {f: p for f, p in merged.items() if p in group_of and (f, p) not in excluded}
    cut, shared = separate_shared(face_ids, labels, vectors, steering, group_of)
    result = stable_ids(face_ids, cut, merged, named, excluded, new_id, photos=photos,
                        provisional=provisional)
    return AnchoredResult(result.assignment, result.retired, shared)
