"""A person who is two people: re-cluster their faces alone, stricter, and offer the parts.

``facecluster split PERSON`` (and the person page's Split button) cluster that person's
faces with a smaller eps (:data:`STRICT` of it, the guard and re-join cuts scaled along),
so look-alikes glued together by the library-wide clustering come apart. The largest
part stays the person; each other part is offered as a question: is it the same person?
"No" puts the part's faces in the person's ``not`` list, so the next clustering makes
them a person of their own (faces kept apart from one person together are kept together,
see :func:`daemon.cluster.links.apply_links`) -- and keeps it so after a rebuild.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from daemon.cluster.dbscan import NOISE, ClusterParams, cluster_faces, configured_params, with_eps
from daemon.cluster.neighbours import as_unit_float32
from daemon.config import ClusterConfig
from daemon.review.ids import SHOWN

STRICT = 0.85
"""The split's eps as a share of the person's usual one."""


@dataclass(frozen=True)
class Part:
    """One part of a split person: all its face ids, and the few to show (central first)."""

    faces: tuple[int, ...]
    shown: tuple[int, ...]


def stricter(params: ClusterParams, share: float = STRICT) -> ClusterParams:
    """The same settings at ``share`` of the eps (cuts scaled with it)."""
    return with_eps(params, params.eps * share)


def split_faces(face_ids: np.ndarray, vectors: np.ndarray, photos: np.ndarray | None,
                params: ClusterParams) -> list[Part]:
    """The parts of one person's faces under ``params``, largest first; faces that fit no
    part are left out. One part (or none) means there is nothing to split."""
    if len(face_ids) < 2 * max(2, params.min_samples):
        return []
    labels = cluster_faces(vectors, params, photos)
    v = as_unit_float32(vectors)
    parts = []
    for c in np.unique(labels[labels != NOISE]):
        rows = np.flatnonzero(labels == c)
        centre = v[rows].mean(axis=0)
        order = rows[np.argsort(np.linalg.norm(v[rows] - centre, axis=1), kind="stable")]
        ids = tuple(int(f) for f in face_ids[order])
        parts.append(Part(ids, ids[:SHOWN]))
    parts.sort(key=lambda p: (-len(p.faces), p.faces[0]))
    return parts


def person_parts(store, engine_id: str, person_id: int,  # noqa: ANN001
                 clustering: ClusterConfig) -> tuple[list, list[Part]]:
    """A stored person's faces (records) and their parts under :func:`stricter` settings
    (of the library's own: ``clustering`` is the config's ``[clustering]``)."""
    faces = store.faces(person_id=person_id)
    if not faces:
        return faces, []
    ids = np.array([f.id for f in faces], dtype=np.int64)
    photos = np.array([f.photo_id for f in faces], dtype=np.int64)
    vecs = store.face_vectors(ids.tolist())
    return faces, split_faces(ids, vecs, photos,
                              stricter(configured_params(engine_id, clustering)))
