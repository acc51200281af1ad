"""DBSCAN on a sparse eps-graph, with a guard against chaining.

Draft: the guard is chosen by measurement (see bench/CLUSTERING.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from daemon.cluster.neighbours import IndexParams, eps_graph

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


def cluster_faces(vectors: np.ndarray, params: ClusterParams) -> np.ndarray:
    """Cluster unit face vectors into people: int64 labels, -1 = noise."""
    graph = eps_graph(vectors, params.eps, params.max_neighbours, params.index)
    return dbscan_graph(graph, params.min_samples)


def default_params(engine_id: str) -> ClusterParams:
    """The measured (dlib) or derived (SFace) defaults for an engine id."""
    if engine_id.endswith("dlib-resnet-v1"):
        return ClusterParams(eps=0.45, min_samples=2)
    if engine_id.endswith("sface-2021dec"):
        return ClusterParams(eps=1.0, min_samples=2)
    raise ValueError(f"no clustering defaults for engine {engine_id!r}")
