"""DBSCAN on a sparse eps-graph, with a guard against chaining.

Draft: the guard is chosen by measurement (see bench/CLUSTERING.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import scipy.sparse as sp
import structlog
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import pdist

from daemon.cluster.neighbours import IndexParams, build_index, eps_graph, search

log = structlog.get_logger(__name__)

Guard = Literal["none", "split"]

NOISE = -1


@dataclass(frozen=True)
class ClusterParams:
    """Settings of :func:`cluster_faces` and of the incremental vote."""

    eps: float
    """Two faces closer than this (Euclidean, unit vectors) may be the same person."""
    min_samples: int
    """Faces within eps (itself included) that make a face a core point."""
    max_neighbours: int = 64
    """Cap on neighbours kept per face in the sparse graph (memory O(n * cap))."""
    vote_k: int = 16
    """Incremental assignment looks at this many nearest known faces."""
    vote_share: float = 0.8
    """...and needs this share of those within eps to be one person."""
    guard: Guard = "split"
    """Chaining guard: ``split`` re-cuts each cluster by average linkage at ``split_eps``."""
    split_eps: float = 0.0
    """Average-linkage cut inside clusters; 0 means ``eps``."""
    split_limit: int = 3000
    """Clusters larger than this are split on a sample of this many faces (see split)."""
    index: IndexParams = field(default_factory=IndexParams)


def dbscan_graph(graph: sp.csr_matrix, min_samples: int) -> np.ndarray:
    """DBSCAN labels from a symmetric sparse eps-graph (no self-loops).

    A face is *core* when it has at least ``min_samples`` faces within eps, itself
    included (scikit-learn's convention). Clusters are the connected components of the
    core faces; a non-core face with a core neighbour joins the cluster of its nearest
    core neighbour (scikit-learn takes whichever it meets first; nearest is
    deterministic and no worse); the rest is noise (-1). Labels are 0..k-1, numbered by
    each cluster's smallest face index, so they do not depend on graph internals.
    """
    n = graph.shape[0]
    labels = np.full(n, NOISE, dtype=np.int64)
    if n == 0:
        return labels
    degree = np.diff(graph.indptr) + 1
    core = degree >= min_samples
    core_idx = np.flatnonzero(core)
    if len(core_idx) == 0:
        return labels
    _, comp = connected_components(graph[core_idx][:, core_idx], directed=False)
    labels[core_idx] = comp
    border = np.flatnonzero(~core & (degree > 1))
    if len(border):
        sub = graph[border].tocoo()
        ok = core[sub.col]
        rows, cols, dist = sub.row[ok], sub.col[ok], sub.data[ok]
        # Nearest core neighbour per border face: sort by (row, distance), take firsts.
        order = np.lexsort((cols, dist, rows))
        rows, cols = rows[order], cols[order]
        first = np.r_[True, rows[1:] != rows[:-1]] if len(rows) else np.zeros(0, bool)
        labels[border[rows[first]]] = labels[cols[first]]
    return renumber(labels)


def renumber(labels: np.ndarray) -> np.ndarray:
    """Relabel clusters 0..k-1 in order of their first face; noise stays -1."""
    labels = np.asarray(labels, dtype=np.int64)
    out = np.full(len(labels), NOISE, dtype=np.int64)
    real = labels != NOISE
    if real.any():
        uniq, first, inv = np.unique(labels[real], return_index=True, return_inverse=True)
        rank = np.empty(len(uniq), dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(len(uniq))
        out[real] = rank[inv]
    return out


def split_cluster(vectors: np.ndarray, cut: float, limit: int, seed: int = 0) -> np.ndarray:
    """Sub-cluster labels 0..k-1 of one cluster by average linkage cut at ``cut``.

    Average linkage joins two groups only when their faces are close *on average*, so a
    few bridging faces cannot glue two people together the way they chain single-linkage
    DBSCAN. It needs all pairwise distances of the cluster, so a cluster larger than
    ``limit`` is split on a random sample of ``limit`` faces and every other face follows
    its nearest sampled face: O(limit^2 + m) instead of O(m^2).
    """
    m = len(vectors)
    if m < 3:
        return np.zeros(m, dtype=np.int64)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(m, limit, replace=False)) if m > limit else np.arange(m)
    tree = linkage(pdist(vectors[sample].astype(np.float64)), method="average")
    sub = fcluster(tree, t=cut, criterion="distance").astype(np.int64) - 1
    if m == len(sample):
        return sub
    _, nearest = search(build_index(vectors[sample]), vectors, 1)
    return sub[nearest[:, 0]]


def guard_split(vectors: np.ndarray, labels: np.ndarray, params: ClusterParams) -> np.ndarray:
    """Re-cut every cluster that is not mutually close (see :func:`split_cluster`).

    A cluster whose faces all lie within the cut of each other is left alone without
    computing anything more (its diameter bounds every average). Parts smaller than
    ``min_samples`` become noise, as DBSCAN would have called them.
    """
    cut = params.split_eps or params.eps
    out = labels.copy()
    next_label = int(labels.max(initial=-1)) + 1
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    bounds = np.flatnonzero(np.diff(sorted_labels)) + 1
    for members in np.split(order, bounds):
        if len(members) < 3 or labels[members[0]] == NOISE:
            continue
        v = vectors[members]
        centre = v.mean(axis=0)
        radius = np.linalg.norm(v - centre, axis=1).max()
        if 2 * radius <= cut:  # diameter <= cut: nothing to split
            continue
        sub = split_cluster(v, cut, params.split_limit)
        if sub.max() == 0:
            continue
        sizes = np.bincount(sub)
        keep = sizes[sub] >= max(2, params.min_samples)
        out[members[~keep]] = NOISE
        big = np.flatnonzero(sizes >= max(2, params.min_samples))
        # The largest part keeps the label; the others get fresh ones.
        for rank, part in enumerate(big[np.argsort(-sizes[big], kind="stable")]):
            if rank:
                out[members[sub == part]] = next_label
                next_label += 1
        log.debug("cluster_split", faces=len(members), parts=len(big))
    return renumber(out)


def cluster_faces(vectors: np.ndarray, params: ClusterParams) -> np.ndarray:
    """Cluster unit face vectors into people: int64 labels, -1 = noise.

    DBSCAN on the sparse eps-graph, then the chaining guard. Never builds an n x n
    matrix: the graph is O(n * max_neighbours) and the guard's pairwise work is bounded
    by ``split_limit`` per cluster.
    """
    graph = eps_graph(vectors, params.eps, params.max_neighbours, params.index)
    labels = dbscan_graph(graph, params.min_samples)
    if params.guard == "split":
        labels = guard_split(np.asarray(vectors, dtype=np.float32), labels, params)
    elif params.guard != "none":
        raise ValueError(f"unknown chaining guard {params.guard!r} (use 'split' or 'none')")
    return labels


def default_params(engine_id: str) -> ClusterParams:
    """The measured (dlib) or derived (SFace) defaults for an engine id."""
    if engine_id.endswith("dlib-resnet-v1"):
        return ClusterParams(eps=0.45, min_samples=2)
    if engine_id.endswith("sface-2021dec"):
        return ClusterParams(eps=1.0, min_samples=2)
    raise ValueError(f"no clustering defaults for engine {engine_id!r}")
