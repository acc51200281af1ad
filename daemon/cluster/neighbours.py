"""Nearest-neighbour search over unit face vectors with FAISS, and the sparse eps-graph.

Faces are L2-normalised, so inner product and Euclidean distance are interchangeable:
``|a - b|^2 = 2 - 2 a.b``. Indexes use inner product; everything handed out is Euclidean
distance, the unit ``eps`` is given in.

Small collections use an exact flat index. Beyond ``exact_limit`` vectors an all-pairs
scan grows quadratically (100k faces = 10^10 dot products per re-clustering), so an HNSW
graph takes over: its neighbours are approximate, but faces within ``eps`` of each other
are so close that HNSW finds them nearly always (measured in ``bench/cluster_scale.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np
import scipy.sparse as sp
import structlog

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class IndexParams:
    """How to build a search index."""

    exact_limit: int = 30_000
    """Up to this many vectors, search exactly (flat index); beyond, use HNSW."""
    hnsw_m: int = 32
    """HNSW links per node: more = better recall, more memory (m * 8 bytes per face)."""
    ef_construction: int = 64
    ef_search: int = 96
    """HNSW search breadth; must exceed the number of neighbours asked for."""


def as_unit_float32(vectors: np.ndarray) -> np.ndarray:
    """Return ``vectors`` as a C-contiguous float32 [n, d] array, checking the shape."""
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    if v.ndim != 2:
        raise ValueError(f"expected an [n, d] array of face vectors, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError("face vectors contain NaN or infinite values")
    return v


def build_index(vectors: np.ndarray, params: IndexParams | None = None) -> faiss.Index:
    """An inner-product FAISS index holding ``vectors`` (row i gets id i)."""
    params = params or IndexParams()
    v = as_unit_float32(vectors)
    n, d = v.shape
    if n <= params.exact_limit:
        index: faiss.Index = faiss.IndexFlatIP(d)
    else:
        index = faiss.IndexHNSWFlat(d, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params.ef_construction
        index.hnsw.efSearch = params.ef_search
    if n:
        index.add(v)
    log.debug("index_built", faces=n, kind=type(index).__name__)
    return index


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest stored vectors of each query.

    Returns (distances float32 [m, k] Euclidean, ids int64 [m, k]); missing neighbours
    (fewer than k stored) have id -1 and distance inf.
    """
    q = as_unit_float32(queries)
    k = max(1, min(k, index.ntotal))
    if index.ntotal == 0:
        m = len(q)
        return np.full((m, 1), np.inf, np.float32), np.full((m, 1), -1, np.int64)
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = max(index.hnsw.efSearch, k + 1)
    sims, ids = index.search(q, k)
    dist = np.sqrt(np.clip(2.0 - 2.0 * sims, 0.0, None)).astype(np.float32)
    dist[ids < 0] = np.inf
    return dist, ids


def eps_graph(
    vectors: np.ndarray,
    eps: float,
    max_neighbours: int,
    params: IndexParams | None = None,
) -> sp.csr_matrix:
    """The sparse symmetric graph of pairs closer than ``eps`` (Euclidean), without self-loops.

    Each face keeps at most its ``max_neighbours`` nearest neighbours within ``eps`` and
    the graph is then symmetrised (an edge kept by either end is kept), so memory is
    O(n * max_neighbours), never O(n^2), even for a person with 100,000 photos. Density
    tests that need at most ``max_neighbours`` neighbours stay exact under this cap.
    Edge weights are distances; duplicates (distance 0) are stored as explicit zeros, so
    use the matrix structure (``indptr``/``indices``), not ``data != 0``.
    """
    v = as_unit_float32(vectors)
    n = len(v)
    if n == 0:
        return sp.csr_matrix((0, 0), dtype=np.float32)
    index = build_index(v, params)
    rows, cols, dists = [], [], []
    step = 65_536  # bound the temporary [step, k] result arrays
    for start in range(0, n, step):
        dist, ids = search(index, v[start:start + step], max_neighbours + 1)
        r = np.repeat(np.arange(start, start + len(ids), dtype=np.int64), ids.shape[1])
        ids, dist = ids.ravel(), dist.ravel()
        keep = (dist <= eps) & (ids >= 0) & (ids != r)
        rows.append(r[keep])
        cols.append(ids[keep])
        dists.append(dist[keep])
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    d = np.concatenate(dists)
    return _dedupe(r, c, d, n)


def _dedupe(rows: np.ndarray, cols: np.ndarray, dist: np.ndarray, n: int) -> sp.csr_matrix:
    """Symmetric CSR of the undirected edges (rows[i], cols[i]), each edge stored once per end."""
    lo = np.minimum(rows, cols)
    hi = np.maximum(rows, cols)
    key = lo * n + hi
    key, first = np.unique(key, return_index=True)
    lo, hi, d = lo[first], hi[first], dist[first]
    g = sp.csr_matrix((np.r_[d, d], (np.r_[lo, hi], np.r_[hi, lo])), shape=(n, n),
                      dtype=np.float32)
    g.sort_indices()
    return g
