"""Strays: a face the cuts left alone joins the cluster its neighbours say, if they say so back.

Why: the chaining guard, the blob re-cut and the re-join all cut by average linkage, and
a face whose average distance to its person's other faces is a little over the cut
(a profile, a hat, another decade) is left as noise even when its nearest faces are
all that person's. On LFW-dev that is most of the lost pairs (1,051 of 1,765 involve a
face in no cluster), and one face of a 100-photo person costs 100 pairs. Joining such a
face by distance alone is wrong more often than right (its nearest clustered face lies
0.34-0.40 away, as a stranger's does), and so is a plain nearest-neighbour vote: a
stranger's few nearest faces are often one look-alike person too.

What tells them apart is reciprocity (the k-reciprocal neighbours of Zhong et al. 2017's
re-ranking): one person's stray face is also among the nearest faces of that person's
faces, while a stranger's nearest faces have closer faces of their own. So a face in no
cluster joins cluster C when at least ``share`` of its ``k`` nearest faces (its eps-graph
row: no new search) are in C, at least ``min_votes`` of them, and at least ``min_back``
of those list it back among their own ``k`` nearest (2 in the dlib defaults) -- never
a cluster that already has a face of its photo. Measured in ``bench/CLUSTERING.md`` ("Strays").
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from daemon.cluster.agree import nearest_lists

NOISE = -1


def _votes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of neighbour labels (-1 = none): the most common label and its count
    (ties to the smaller label; a row with no label gets -1 and 0)."""
    ordered = np.sort(labels, axis=1)
    counts = (ordered[:, :, None] == ordered[:, None, :]).sum(axis=2, dtype=np.int16)
    counts[ordered == NOISE] = 0
    # Largest count, then smallest label: the sort puts smaller labels first.
    at = counts.argmax(axis=1)
    rows = np.arange(len(labels))
    best, n = ordered[rows, at], counts[rows, at]
    best[n == 0] = NOISE
    return best, n


def _within(vectors: np.ndarray, labels: np.ndarray, faces: np.ndarray, target: np.ndarray,
            cut: float) -> tuple[np.ndarray, np.ndarray]:
    """The (face, cluster) pairs whose average linkage (root mean squared distance from
    the face to the cluster's faces) is within ``cut``: exact from the cluster's vector
    sum, summed over the target clusters' faces only (a million faces at 1M)."""
    clusters, which = np.unique(target, return_inverse=True)
    members = np.flatnonzero(np.isin(labels, clusters))
    member_of = sp.csr_matrix(
        (np.ones(len(members), np.float32),
         (np.searchsorted(clusters, labels[members]), members)),
        shape=(len(clusters), len(labels)))
    sums = np.asarray(member_of @ np.asarray(vectors, np.float32), np.float64)
    sizes = np.bincount(np.searchsorted(clusters, labels[members]), minlength=len(clusters))
    mean_cos = np.einsum("ij,ij->i", np.asarray(vectors[faces], np.float64), sums[which])
    ok = 2 - 2 * mean_cos / sizes[which] <= cut * cut
    return faces[ok], target[ok]


def join_strays(graph: sp.csr_matrix, labels: np.ndarray, k: int, share: float,
                vectors: np.ndarray | None = None, cut: float = 0.0,
                min_votes: int = 2, min_back: int = 2,
                photos: np.ndarray | None = None) -> np.ndarray:
    """Labels with the noise faces that their neighbours claim back joined (module
    docstring). ``graph`` is the symmetric eps-graph over the same faces as ``labels``;
    ``photos`` (int ids, negative = unknown) keeps two faces of one photo apart."""
    out = np.asarray(labels, np.int64).copy()
    noise = np.flatnonzero(out == NOISE)
    if not len(noise) or graph.nnz == 0 or k < 1:
        return out
    near = nearest_lists(graph, noise, k)[:, 1:]
    near_label = np.where(near >= 0, out[np.clip(near, 0, None)], NOISE)
    best, n = _votes(near_label)
    chosen = np.flatnonzero((best != NOISE) & (n >= max(min_votes, share * k)))
    if not len(chosen):
        return out
    # Reciprocity: does one of the voters list the stray among its own k nearest?
    r, j = np.nonzero(near_label[chosen] == best[chosen, None])
    voters = near[chosen[r], j]
    uniq, where = np.unique(voters, return_inverse=True)
    back = nearest_lists(graph, uniq, k)[:, 1:][where]
    listed = (back == noise[chosen[r], None]).any(axis=1)
    claimed = np.bincount(r[listed], minlength=len(chosen)) >= min_back
    faces, target = noise[chosen[claimed]], best[chosen[claimed]]
    if photos is not None and len(faces):
        # Two strays of one photo joining one cluster are left to the same-photo rule.
        ids = np.int64(max(int(photos.max()), 0) + 1)
        held = (out != NOISE) & (photos >= 0)
        seen = np.unique(out[held] * ids + photos[held])
        clash = (photos[faces] >= 0) & np.isin(target * ids + photos[faces], seen)
        faces, target = faces[~clash], target[~clash]
    if cut > 0 and vectors is not None and len(faces):
        faces, target = _within(vectors, out, faces, target, cut)
    out[faces] = target
    return out
