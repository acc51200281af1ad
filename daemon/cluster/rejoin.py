"""Re-join the fragments of one person after the split, by exact average linkage.

Why: beyond ``exact_limit`` faces the eps-graph comes from an approximate neighbour
search, which misses some close pairs (about one in ten at 56k faces; measured in
``bench/CLUSTERING.md``). DBSCAN cannot join what the graph does not connect, so a
person falls apart into several clusters and noise faces. The split never merges, so
nothing downstream repairs it.

This pass does, cheaply, at the level of clusters: candidate pairs of clusters are the
cross-cluster edges of the graph plus each cluster's few nearest clusters by centre
(a search over far fewer, far better separated points than the faces). Candidates are
merged bottom-up by average linkage on squared distances, which on unit vectors is the
mean cosine similarity ``(sum_A . sum_B) / (|A| |B|)``: exact from each cluster's vector
sum, with no pairwise distances at all. Merging follows the reciprocal-nearest-pair rule
(two clusters merge in a round when each is the other's best candidate): for a
reducible linkage such as this one, that gives the same result as merging one best pair
at a time, but whole rounds run as array operations.

With an exact graph and ``cut`` not above the split's cut it changes (next to) nothing:
the split already made every such merge it could. Its job is the approximate case.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from daemon.cluster.constraints import conflict_keys
from daemon.cluster.edges import label_pairs
from daemon.cluster.neighbours import IndexParams, build_index, search

NOISE = -1
"""The label of faces in no cluster (DBSCAN's convention, as in :mod:`.dbscan`)."""


def _pairs(a: np.ndarray, b: np.ndarray, k: int, values: np.ndarray | None = None
           ) -> tuple[np.ndarray, ...]:
    """Distinct unordered pairs (a < b) of cluster ids < ``k``, self-pairs dropped; with
    ``values``, also the value of each kept pair (from its first occurrence)."""
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    keep = lo != hi
    key, first = np.unique(lo[keep] * np.int64(k) + hi[keep], return_index=True)
    if values is None:
        return key // k, key % k
    return key // k, key % k, values[keep][first]


def _similarity(sums: np.ndarray, counts: np.ndarray, a: np.ndarray, b: np.ndarray,
                block: int = 65536) -> np.ndarray:
    """Mean cosine similarity between the faces of clusters a[i] and b[i], from their sums.

    In blocks: gathering both sums for millions of pairs at once would take gigabytes.
    """
    out = np.empty(len(a), np.float64)
    for start in range(0, len(a), block):
        i, j = a[start:start + block], b[start:start + block]
        out[start:start + block] = np.einsum("ij,ij->i", sums[i], sums[j], dtype=np.float64)
        out[start:start + block] /= counts[i] * counts[j]
    return out


def _cross_edges(graph: sp.csr_matrix, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The graph's edges between different groups, as group pairs (a < b): nearly all
    edges lie inside one cluster, and only the few between clusters matter here."""
    a_parts, b_parts = [], []
    for a, b in label_pairs(graph, groups):
        keep = a < b  # each undirected edge is stored at both ends: keep one
        a_parts.append(a[keep])
        b_parts.append(b[keep])
    return np.concatenate(a_parts), np.concatenate(b_parts)


def _candidates(vectors: np.ndarray, groups: np.ndarray, k: int, graph: sp.csr_matrix,
                nearest: int, index: IndexParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cluster vector sums, and the candidate cluster pairs (graph edges + nearest centres)."""
    sums = np.zeros((k, vectors.shape[1]), np.float32)
    np.add.at(sums, groups, vectors)
    a, b = _cross_edges(graph, groups)
    if nearest > 0 and k > 1:
        centres = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
        # Per-centre probing (an IVF query per centre), not the faces' cell join: on
        # LFW-dev + 50k distractors it kept 0.925 / 0.930 of the real faces' F against
        # 0.913 / 0.917, for half a second more.
        _, near = search(build_index(centres, index), centres, nearest + 1)
        del centres
        rows = np.repeat(np.arange(k), near.shape[1])
        cols = near.ravel()
        ok = cols >= 0
        a, b = np.r_[a, rows[ok]], np.r_[b, cols[ok]]
    a, b = _pairs(a, b, k)
    return sums, a, b


# Over 60 lines: one merge loop whose array state (sums, pairs, conflicts) must stay together.
def rejoin(vectors: np.ndarray, labels: np.ndarray, graph: sp.csr_matrix, cut: float,
           *, nearest: int = 4, min_size: int = 2, index: IndexParams | None = None,
           photos: np.ndarray | None = None) -> np.ndarray:
    """Merge clusters (noise faces count as one-face clusters) whose average linkage is
    within ``cut``; returns new labels 0..m-1, groups under ``min_size`` faces as noise.
    Two groups holding faces of one photo (``photos``, int ids) never merge.

    ``cut`` is an L2 distance on unit vectors, like ``eps``: two groups merge while the
    mean of their squared cross distances is at most ``cut ** 2``.
    """
    v = np.asarray(vectors, dtype=np.float32)
    n = len(v)
    if n == 0:
        return labels.copy()
    groups = labels.astype(np.int64, copy=True)
    alone = groups == NOISE
    groups[alone] = int(groups.max(initial=-1)) + 1 + np.arange(int(alone.sum()))
    k = int(groups.max()) + 1
    sums, a, b = _candidates(v, groups, k, graph, nearest, index or IndexParams())
    counts = np.bincount(groups, minlength=k).astype(np.float64)
    threshold = 1.0 - cut * cut / 2.0
    parent = np.arange(k)
    sim = _similarity(sums, counts, a, b)
    conflicts = conflict_keys(groups, photos, k)
    while len(a):
        # A pair below the threshold can never come back above it: a merged group's
        # similarity to C is the size-weighted mean of its parts' similarities to C.
        # Nor can a pair sharing a photo: merged groups keep their parts' photos.
        keep = sim >= threshold
        if len(conflicts):
            keep &= ~np.isin(a * np.int64(k) + b, conflicts, assume_unique=False)
        a, b, sim = a[keep], b[keep], sim[keep]
        if not len(a):
            break
        # Each cluster's best candidate (ties to the smaller id, so runs are repeatable).
        ends, other = np.r_[a, b], np.r_[b, a]
        order = np.lexsort((other, -np.r_[sim, sim], ends))
        ends, other = ends[order], other[order]
        first = np.r_[True, ends[1:] != ends[:-1]]
        best = np.full(k, -1, np.int64)
        best[ends[first]] = other[first]
        mutual = (best[a] == b) & (best[b] == a)
        keep_id, gone = a[mutual], b[mutual]  # a < b, so the smaller id survives
        sums[keep_id] += sums[gone]
        counts[keep_id] += counts[gone]
        parent[gone] = keep_id
        moved = np.arange(k)
        moved[gone] = keep_id
        a, b, sim = _pairs(moved[a], moved[b], k, sim)
        if len(conflicts):
            lo, hi = moved[conflicts // k], moved[conflicts % k]
            conflicts = np.unique(np.minimum(lo, hi) * np.int64(k) + np.maximum(lo, hi))
        # Only pairs with a merged end changed; the rest keep their similarity.
        touched = np.zeros(k, bool)
        touched[keep_id] = True
        stale = touched[a] | touched[b]
        sim[stale] = _similarity(sums, counts, a[stale], b[stale])
    while True:  # follow merges to their surviving root
        root = parent[parent]
        if np.array_equal(root, parent):
            break
        parent = root
    final = parent[groups]
    _, final, sizes = np.unique(final, return_inverse=True, return_counts=True)
    small = sizes[final] < max(2, min_size)
    final[small] = NOISE
    real = final != NOISE
    final[real] = np.unique(final[real], return_inverse=True)[1]
    return final.astype(np.int64)
