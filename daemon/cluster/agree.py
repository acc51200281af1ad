"""Neighbourhood agreement: do a cluster's faces list each other as nearest neighbours?

Why: dlib's embeddings put look-alike children of different families within eps of each
other, and average linkage builds albums of them. Their spread overlaps with one
person's (``blobs.py``), but their neighbourhoods do not: one person's photos list each
other, and the same other faces, among their few nearest neighbours, while in a blob of
look-alikes each face has its own few photos nearest and shares little with the rest.
This is the shared-neighbour / k-reciprocal idea of re-ranking (Zhong et al. 2017) and
rank-order clustering (Otto et al. 2017), computed on lists the clustering already has:
a face's ``k`` nearest faces within eps are the first ``k`` entries of its eps-graph row
by distance, so there is no new search. A face with fewer than ``k`` faces within eps
has a shorter list, which leaves an isolated pair (two photos of one person, nobody else
near) in full agreement.

The agreement of an edge (i, j) is the Jaccard overlap |N(i) & N(j)| / |N(i) | N(j)| of
N(i) = {i} + i's nearest list. A cluster's agreement is the mean over the graph edges
inside it. On Families In the Wild (clusters of >= 10 faces) it tells clusters of many
people from one person's much better than the spread does (ROC AUC 0.98 against 0.90);
using it per edge (pruning the graph, or adding a Jaccard term to the linkage) was tried
and was not better (``bench/CLUSTERING.md``, "Family photos").
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

NOISE = -1

_BLOCK = 65536


def nearest_lists(graph: sp.csr_matrix, faces: np.ndarray, k: int) -> np.ndarray:
    """[len(faces), k + 1] int64: each face itself, then its ``k`` nearest graph
    neighbours by distance (ties by index), padded with -1."""
    faces = np.asarray(faces, np.int64)
    starts, ends = graph.indptr[faces], graph.indptr[faces + 1]
    counts = ends - starts
    rows = np.repeat(np.arange(len(faces)), counts)
    at = np.repeat(starts - np.r_[0, np.cumsum(counts)[:-1]], counts) + np.arange(len(rows))
    cols, dist = graph.indices[at], graph.data[at]
    order = np.lexsort((cols, dist, rows))  # rows stay grouped, each row by distance
    rank = np.arange(len(order)) - np.repeat(np.r_[0, np.cumsum(counts)[:-1]], counts)
    out = np.full((len(faces), k + 1), -1, np.int64)
    out[:, 0] = faces
    keep = rank < k
    out[rows[keep], 1 + rank[keep]] = cols[order][keep]
    return out


def edge_agreement(graph: sp.csr_matrix, a: np.ndarray, b: np.ndarray, k: int
                   ) -> np.ndarray:
    """Jaccard overlap of the two faces' nearest lists (themselves included), per pair."""
    faces, where = np.unique(np.r_[a, b], return_inverse=True)
    lists = nearest_lists(graph, faces, k)
    size = (lists >= 0).sum(axis=1)
    ia, ib = where[:len(a)], where[len(a):]
    out = np.empty(len(a), np.float64)
    for start in range(0, len(a), _BLOCK):
        i, j = ia[start:start + _BLOCK], ib[start:start + _BLOCK]
        left = lists[i]
        right = np.where(lists[j] >= 0, lists[j], -2)  # pads (-1) never match
        inter = (left[:, :, None] == right[:, None, :]).sum(axis=(1, 2))
        out[start:start + len(i)] = inter / (size[i] + size[j] - inter)
    return out


def cluster_agreement(graph: sp.csr_matrix, labels: np.ndarray, k: int, min_size: int,
                      max_size: int, max_edges: int = 256, seed: int = 0) -> np.ndarray:
    """Per cluster label 0..max: the mean agreement of the graph edges inside it (NaN for
    clusters of fewer than ``min_size`` or more than ``max_size`` faces, or with no inside
    edge).

    Why a largest size: lists of ``k`` faces can agree only in a cluster not much
    larger than ``k``. Beyond that the mean falls with the size even for one person
    (synthetic people of 40-80 faces: median 0.37 at k = 20; over 200 faces: 0.11), so
    large clusters are left to the spread test of :mod:`.blobs`.

    A cluster's mean is taken over at most ``max_edges`` of its inside edges, drawn at
    random (fixed seed): at a million faces the graph has tens of millions of edges,
    nearly all inside clusters, and a sample's mean is as good for a threshold.
    """
    m = int(labels.max(initial=-1)) + 1
    out = np.full(m, np.nan)
    if m == 0 or graph.nnz == 0:
        return out
    sizes = np.bincount(labels[labels != NOISE], minlength=m)
    big = np.flatnonzero((sizes >= min_size) & (sizes <= max_size))
    if not len(big):
        return out
    rng = np.random.default_rng(seed)
    faces = np.flatnonzero(np.isin(labels, big))
    counts = np.diff(graph.indptr)[faces]
    a = np.repeat(faces, counts)
    at = np.repeat(graph.indptr[faces] - np.r_[0, np.cumsum(counts)[:-1]], counts)
    b = graph.indices[at + np.arange(len(a))].astype(np.int64)
    inside = (labels[a] == labels[b]) & (a < b)  # each undirected edge once
    a, b = a[inside], b[inside]
    # A random order, then each cluster's first max_edges edges.
    order = rng.permutation(len(a))
    order = order[np.argsort(labels[a[order]], kind="stable")]
    lab = labels[a[order]]
    first = np.r_[0, np.flatnonzero(np.diff(lab)) + 1]
    rank = np.arange(len(lab)) - np.repeat(first, np.diff(np.r_[first, len(lab)]))
    pick = order[rank < max_edges]
    score = edge_agreement(graph, a[pick], b[pick], k)
    lab = labels[a[pick]]
    total = np.bincount(lab, weights=score, minlength=m)
    n = np.bincount(lab, minlength=m)
    has = n > 0
    out[has] = total[has] / n[has]
    return out
