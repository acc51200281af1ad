"""Nearest-neighbour search over unit face vectors with FAISS, and the sparse eps-graph.

Faces are L2-normalised, so inner product and Euclidean distance are interchangeable:
``|a - b|^2 = 2 - 2 a.b``. Indexes use inner product; everything handed out is Euclidean
distance, the unit ``eps`` is given in.

Small collections are searched exactly. Beyond ``exact_limit`` faces an all-pairs scan
grows quadratically (100k faces = 10^10 dot products per re-clustering), so the faces are
first partitioned into cells by k-means (an inverted file, as FAISS's IVF index) and each
face is compared only with the faces of the ``nprobe`` cells nearest its own. The
all-faces neighbour search is done as a *cell join* -- a block matrix product per cell --
because that runs at BLAS speed, several times faster than one IVF query per face.

The price is recall: 128-d faces within ``eps`` do not reliably share or neighbour a cell,
and at 56k faces the join finds about 89 % of the close pairs (HNSW and per-face IVF do
better there but cost minutes at a million; ``bench/CLUSTERING.md``). The clustering
repairs the damage downstream (:mod:`.rejoin`) instead of paying for it here.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import faiss
import numpy as np
import scipy.sparse as sp
import structlog

log = structlog.get_logger(__name__)

_EXACT_BLOCK = 4096
"""Faces per exact search call: bounds the n x k result arrays held at once."""


@dataclass(frozen=True)
class IndexParams:
    """How to search for neighbours."""

    exact_limit: int = 20_000
    """Up to this many faces, search exactly; beyond, use k-means cells (IVF)."""
    cells_per_sqrt: float = 2.0
    """Number of cells = this * sqrt(n): balances cell scans against centroid scans."""
    nprobe: int = 8
    """Cells searched per face: more = better recall, proportionally slower."""
    train_per_cell: int = 30
    """k-means trains on this many faces per cell (a sample), 10 iterations."""
    seed: int = 1234


def as_unit_float32(vectors: np.ndarray) -> np.ndarray:
    """Return ``vectors`` as a C-contiguous float32 [n, d] array, checking the shape."""
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    if v.ndim != 2:
        raise ValueError(f"expected an [n, d] array of face vectors, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError("face vectors contain NaN or infinite values")
    return v


def _cells(n: int, params: IndexParams) -> int:
    return max(1, int(params.cells_per_sqrt * np.sqrt(n)))


def _train_centroids(v: np.ndarray, cells: int, params: IndexParams) -> np.ndarray:
    """k-means centroids of a sample of ``v`` (inner product, so unit centroids)."""
    rng = np.random.default_rng(params.seed)
    sample = v[rng.choice(len(v), min(len(v), cells * params.train_per_cell), replace=False)]
    km = faiss.Kmeans(v.shape[1], cells, niter=10, spherical=True, seed=params.seed,
                      max_points_per_centroid=params.train_per_cell)
    km.train(sample)
    return km.centroids


def build_index(vectors: np.ndarray, params: IndexParams | None = None) -> faiss.Index:
    """An inner-product FAISS index holding ``vectors`` (row i gets id i).

    Exact (flat) up to ``params.exact_limit`` faces, an IVF index beyond; vectors
    added later go into the same cells.
    """
    params = params or IndexParams()
    v = as_unit_float32(vectors)
    n, d = v.shape
    if n <= params.exact_limit:
        index: faiss.Index = faiss.IndexFlatIP(d)
    else:
        cells = _cells(n, params)
        quantizer = faiss.IndexFlatIP(d)
        quantizer.add(_train_centroids(v, cells, params))
        index = faiss.IndexIVFFlat(quantizer, d, cells, faiss.METRIC_INNER_PRODUCT)
        index.is_trained = True
        index.nprobe = params.nprobe
        index.referenced_objects = [quantizer]  # the IVF index does not own it
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
    return _to_l2(*index.search(q, k))


def _blocks(v: np.ndarray, k: int, params: IndexParams
            ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The ``k`` nearest faces of every face, block by block: (face rows, inner products
    [m, k], ids int64 [m, k]), missing = (-inf, -1). Blocks go to the caller one at a time
    so that at a million faces no n x k array need be kept (it would be ~0.8 GB)."""
    n = len(v)
    if n <= params.exact_limit:
        for start in range(0, n, _EXACT_BLOCK):
            rows = np.arange(start, min(n, start + _EXACT_BLOCK))
            sims, ids = faiss.knn(v[rows], v, k, metric=faiss.METRIC_INNER_PRODUCT)
            yield rows, sims, ids
        return
    cells = _cells(n, params)
    centroids = _train_centroids(v, cells, params)
    _, home = faiss.knn(v, centroids, 1, metric=faiss.METRIC_INNER_PRODUCT)
    home = home[:, 0]
    # Each cell's faces are compared with the faces of its nprobe nearest cells.
    _, near_cells = faiss.knn(centroids, centroids, min(params.nprobe, cells),
                              metric=faiss.METRIC_INNER_PRODUCT)
    order = np.argsort(home, kind="stable")
    starts = np.searchsorted(home[order], np.arange(cells + 1))
    del home

    def join(c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        queries = order[starts[c]:starts[c + 1]]
        sims = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        if len(queries):
            cand = np.concatenate([order[starts[o]:starts[o + 1]]
                                   for o in near_cells[c] if o >= 0])
            kk = min(k, len(cand))
            s, j = faiss.knn(v[queries], v[cand], kk, metric=faiss.METRIC_INNER_PRODUCT)
            sims[:, :kk] = s
            ids[:, :kk] = np.where(j >= 0, cand[np.clip(j, 0, None)], -1)
        return queries, sims, ids

    # Cells are small: OpenMP start-up per call would cost more than the product itself,
    # so run single-threaded FAISS calls side by side (FAISS releases the GIL).
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            yield from pool.map(join, range(cells))
    finally:
        faiss.omp_set_num_threads(threads)


def _to_l2(sims: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inner products of unit vectors -> Euclidean distances; missing ids -> inf.

    Works in place on ``sims`` (FAISS's fresh float32 output of one search block), so a
    block costs no second array of its size.
    """
    dist = np.asarray(sims, dtype=np.float32)
    np.multiply(dist, -2.0, out=dist)
    dist += 2.0
    np.clip(dist, 0.0, None, out=dist)
    np.sqrt(dist, out=dist)
    dist[ids < 0] = np.inf
    return dist, ids.astype(np.int64, copy=False)


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
    k = max(1, min(max_neighbours + 1, n))
    index = np.int32 if n < 2**31 else np.int64
    rows, cols, near = [], [], []
    # Only the few neighbours within eps of each block are kept.
    for block, sims, ids in _blocks(v, k, params or IndexParams()):
        dist, ids = _to_l2(sims, ids)
        keep = dist <= eps
        keep &= ids >= 0
        keep &= ids != block[:, None]
        r, slot = np.nonzero(keep)
        rows.append(block[r].astype(index))
        cols.append(ids[r, slot].astype(index))
        near.append(dist[r, slot])
    return _dedupe(np.concatenate(rows), np.concatenate(cols), np.concatenate(near), n)


def _dedupe(rows: np.ndarray, cols: np.ndarray, dist: np.ndarray, n: int) -> sp.csr_matrix:
    """Symmetric CSR of the undirected edges (rows[i], cols[i]), each edge stored once per end."""
    key = np.minimum(rows, cols).astype(np.int64)
    key *= n
    key += np.maximum(rows, cols)
    key, first = np.unique(key, return_index=True)
    d = dist[first]
    del first
    lo, hi = (key // n).astype(rows.dtype), (key % n).astype(rows.dtype)
    del key
    g = sp.csr_matrix((np.r_[d, d], (np.r_[lo, hi], np.r_[hi, lo])), shape=(n, n),
                      dtype=np.float32)
    g.sort_indices()
    return g
