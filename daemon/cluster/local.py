"""Decide a new face the neighbour vote left open by re-clustering its neighbourhood.

Why: the vote (:func:`.stable.assign_new`) only places a face that is within ``eps``
of a known person's faces. A face that is not -- a second photo of somebody new, or of
a known person far from their other photos but close to a face nobody was given yet --
used to wait for the next full re-clustering (10 s of quiet at least, minutes at a
million faces) before it reached an album. The full re-clustering would decide it from
its neighbourhood; so this does the same on that neighbourhood alone: the new faces,
the known faces near them, the same :func:`.dbscan.cluster_faces` with the same
settings and constraints. Its result only ever *adds*: a new face joins the person its
local cluster clearly belongs to, or a tight local cluster of faces nobody was given
becomes a new person. Known people keep their faces. What it decides is provisional:
the next full re-clustering maps its clusters onto the same ids but decides these
faces afresh (:func:`.stable.stable_ids`, ``provisional``), so a hasty decision
cannot outlive it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from daemon.cluster.dbscan import NOISE, ClusterParams, cluster_faces


@dataclass(frozen=True)
class LocalDecision:
    """Rows of the neighbourhood, decided.

    ``joins``: a new face's row -> the known person its local cluster belongs to.
    ``new_people``: groups of rows (new faces and faces nobody was given) that form a
    person of their own.
    """

    joins: dict[int, int] = field(default_factory=dict)
    new_people: list[list[int]] = field(default_factory=list)


def decide_locally(vectors: np.ndarray, persons: np.ndarray, is_new: np.ndarray,
                   params: ClusterParams, photos: np.ndarray | None = None,
                   scores: np.ndarray | None = None) -> LocalDecision:
    """Cluster a neighbourhood and decide its new faces.

    ``persons`` holds each row's person id (:data:`NOISE` for none, new faces included);
    ``is_new`` marks the faces to decide; ``photos`` and ``scores`` are as for
    :func:`cluster_faces` (two faces of one photo are never put in one cluster; poor
    faces never seed one). A local cluster with known faces goes to their person when
    at least ``params.vote_share`` of them agree (else its new faces wait); one with
    none becomes a new person if it is tight (:func:`_tight`).
    """
    persons = np.asarray(persons, np.int64)
    is_new = np.asarray(is_new, bool)
    # Cohesion and the second linkage pass read where a cluster's close pairs lead; a
    # neighbourhood cut out of the library has no outside, so every cluster in it would
    # look cohesive. Here both are off: the next full clustering applies them.
    local = replace(params, blob_whole=0.0, merge_eps=0.0)
    labels = cluster_faces(vectors, local, photos, scores)
    decision = LocalDecision()
    for label in np.unique(labels[is_new]):
        if label == NOISE:
            continue
        rows = np.flatnonzero(labels == label)
        known = persons[rows][persons[rows] != NOISE]
        if len(known) == 0:
            if _tight(vectors, rows, params):
                decision.new_people.append(rows.tolist())
            continue
        ids, counts = np.unique(known, return_counts=True)
        best = int(np.argmax(counts))
        if counts[best] < params.vote_share * len(known):
            continue  # a local cluster of two people: the full re-clustering decides
        for row in rows[is_new[rows]]:
            decision.joins[int(row)] = int(ids[best])
    return decision


def _tight(vectors: np.ndarray, rows: np.ndarray, params: ClusterParams) -> bool:
    """Whether every two faces of ``rows`` lie within the blob re-cut's distance.

    A new person made from a small neighbourhood misses what the full clustering sees:
    in a crowded region (look-alike children of many families) it would re-cut a loose
    group, or leave it unassigned. So a new person is made at once only of faces as
    close as the re-cut keeps together; a looser group waits for the full clustering.
    """
    limit = params.blob_cut or params.split_eps or params.eps
    v = np.asarray(vectors, np.float32)[rows]
    d2 = np.maximum(0.0, 2.0 - 2.0 * (v @ v.T))
    return bool(np.all(d2 <= limit * limit + 1e-6))
