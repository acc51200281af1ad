"""DBSCAN on a sparse eps-graph, with a guard against chaining.

DBSCAN with a small ``min_samples`` is single linkage: one chain of look-alike faces
glues two people (and on LFW-dev at eps 0.40, nearly everybody) into one cluster. The
guard re-cuts each DBSCAN cluster by average linkage at ``split_eps``. Because faces of
different DBSCAN clusters are all farther than eps apart, this equals global
average-linkage clustering cut at ``split_eps <= eps`` -- computed without an n x n
matrix. Measurements and the alternatives tried are in ``bench/CLUSTERING.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

import numpy as np
import scipy.sparse as sp
import structlog
from scipy.sparse.csgraph import connected_components

from daemon.cluster.agree import cluster_agreement
from daemon.cluster.blobs import split_blobs
from daemon.cluster.cohesion import cluster_cohesion
from daemon.cluster.constraints import (
    as_photos,
    constrained_average_linkage,
    enforce,
    shared_photo_pairs,
)
from daemon.cluster.fragments import merge_fragments
from daemon.cluster.links import Links, apply_links
from daemon.cluster.neighbours import IndexParams, build_index, eps_graph, search
from daemon.cluster.quality import attach, weak_faces
from daemon.cluster.rejoin import rejoin
from daemon.cluster.strays import join_strays

if TYPE_CHECKING:
    from daemon.config import ClusterConfig

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
    rejoin_eps: float = 0.0
    """After the split, fragments within this average linkage merge again; 0 = off
    (see :mod:`daemon.cluster.rejoin`: it repairs what an approximate search missed)."""
    rejoin_nearest: int = 4
    """Each cluster's nearest clusters by centre that the re-join considers."""
    weak_score: float = 0.0
    """Faces with a detector score below this never seed or bridge a person; they join
    one afterwards only by a clear vote (:mod:`.quality`); 0 = off."""
    blob_size: int = 0
    """Clusters of at least this many faces whose spread exceeds ``blob_spread`` are
    re-cut at ``blob_cut`` (:mod:`.blobs`); 0 = off."""
    blob_spread: float = 0.0
    blob_cut: float = 0.0
    blob_large: int = 0
    """Clusters of at least this many faces count as blobs already above
    ``blob_large_spread``: the more faces, the tighter one person's average is."""
    blob_large_spread: float = 0.0
    blob_agree: float = 0.0
    """Clusters of ``blob_agree_size`` to ``blob_agree_max`` faces spreading over
    ``blob_agree_spread`` whose inside eps-graph edges agree (:mod:`.agree`: Jaccard
    overlap of the two faces' ``blob_agree_k`` nearest lists) by less than this on
    average are blobs too, re-cut at ``blob_cut``; 0 = off."""
    blob_agree_size: int = 10
    blob_agree_max: int = 80
    blob_agree_k: int = 20
    blob_agree_spread: float = 0.0
    blob_whole: float = 0.0
    """A cluster spreading no wider than ``blob_whole_spread`` whose faces' eps-graph
    edges stay inside it at least this share of the time (:mod:`.cohesion`) is one
    person, not a blob by its spread; 0 = off."""
    blob_whole_spread: float = 0.0
    merge_eps: float = 0.0
    """Second linkage pass (:mod:`.fragments`): two clusters within this average linkage
    merge when each sends at least ``merge_share`` of its leaving eps-graph edges to the
    other; 0 = off."""
    merge_share: float = 0.7
    stray_k: int = 0
    """A face in no cluster joins the cluster of at least ``stray_share`` of its
    ``stray_k`` nearest graph neighbours when ``stray_back`` of those list it back among
    their own and its average linkage to the cluster is within ``merge_eps`` (when set)
    (:mod:`.strays`); 0 = off."""
    stray_share: float = 0.8
    stray_back: int = 2
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
    _, comp = connected_components(_restrict(graph, core_idx, np.inf), directed=False)
    labels[core_idx] = comp
    border = np.flatnonzero(~core & (degree > 1))
    if len(border):
        rows, cols = _nearest(graph[border].tocoo(), core)
        labels[border[rows]] = labels[cols]
    return renumber(labels)


def _nearest(sub: sp.coo_matrix, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's nearest ``allowed`` column: (rows that have one, that column).

    Ties in distance go to the smaller column, so the result is deterministic.
    """
    ok = allowed[sub.col]
    rows, cols, dist = sub.row[ok], sub.col[ok], sub.data[ok]
    order = np.lexsort((cols, dist, rows))
    rows, cols = rows[order], cols[order]
    first = np.r_[True, rows[1:] != rows[:-1]] if len(rows) else np.zeros(0, bool)
    return rows[first], cols[first]


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


def split_cluster(vectors: np.ndarray, cut: float, limit: int, seed: int = 0,
                  photos: np.ndarray | None = None) -> np.ndarray:
    """Sub-cluster labels 0..k-1 of one cluster by average linkage cut at ``cut``.

    Average linkage joins two groups only when their faces are close *on average*, so a
    few bridging faces cannot glue two people together the way they chain single-linkage
    DBSCAN. Two groups holding faces of one photo (``photos``) never merge. It needs
    all pairwise distances of the cluster, so a cluster larger than ``limit`` is split
    on a random sample of ``limit`` faces and every other face follows its nearest
    sampled face: O(limit^2 + m) instead of O(m^2) (:func:`enforce` later removes any
    same-photo pair that following brings back).
    """
    m = len(vectors)
    if m < 2 or (m < 3 and photos is None):
        return np.zeros(m, dtype=np.int64)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(m, limit, replace=False)) if m > limit else np.arange(m)
    sub = constrained_average_linkage(
        vectors[sample], cut, None if photos is None else photos[sample])
    if m == len(sample):
        return sub
    _, nearest = search(build_index(vectors[sample]), vectors, 1)
    return sub[nearest[:, 0]]


PEEL_STEP = 0.97
"""Each peeling round keeps only edges shorter than this fraction of the last radius."""
PEEL_FLOOR = 0.6
"""Peeling stops at this fraction of eps; what is still too large is split on a sample."""


def _restrict(graph: sp.csr_matrix, idx: np.ndarray, radius: float,
              rows: np.ndarray | None = None, block: int = 65536) -> sp.csr_matrix:
    """The subgraph on ``idx`` with only the edges no longer than ``radius``; with
    ``rows`` (positions in ``idx``), only those rows of it.

    Read in blocks of rows, each mapped in one pass: scipy's ``graph[idx][:, idx]``
    makes several whole copies, gigabytes for a giant component at a million faces.
    Zero-length edges (duplicate faces) survive as explicit zeros.
    """
    idx = np.asarray(idx)
    local = np.full(graph.shape[0], -1, dtype=graph.indices.dtype)
    local[idx] = np.arange(len(idx), dtype=local.dtype)
    picked = idx if rows is None else idx[rows]
    parts_r, parts_c, parts_d = [], [], []
    for start in range(0, len(picked), block):
        chunk = picked[start:start + block]
        starts = graph.indptr[chunk]
        lengths = graph.indptr[chunk + 1] - starts
        # Positions of the chunk's row entries in graph.indices, without a Python loop.
        at = np.repeat(starts - np.r_[0, np.cumsum(lengths)[:-1]], lengths)
        at += np.arange(len(at))
        cols = local[graph.indices[at]]
        data = graph.data[at]
        keep = (cols >= 0) & (data <= radius)
        row = np.repeat(np.arange(start, start + len(chunk), dtype=local.dtype), lengths)
        parts_r.append(row[keep])
        parts_c.append(cols[keep])
        parts_d.append(data[keep])
    g = sp.csr_matrix(
        (np.concatenate(parts_d or [np.zeros(0, np.float32)]),
         (np.concatenate(parts_r or [np.zeros(0, local.dtype)]),
          np.concatenate(parts_c or [np.zeros(0, local.dtype)]))),
        shape=(len(picked), len(idx)),
    )
    g.sort_indices()
    return g


def peel(
    graph: sp.csr_matrix, members: np.ndarray, eps: float, limit: int, min_samples: int
) -> list[np.ndarray]:
    """Cut a cluster too large for exact average linkage into denser parts.

    With many faces, chains of look-alikes at ``eps`` glue thousands of people into one
    DBSCAN component; cutting it on a random sample loses its structure. Instead, read
    the component at a higher density, as HDBSCAN does: shrink the radius step by step
    on the component's own edges (no new neighbour search) until every part fits in
    ``limit``. The weakest links -- the chains -- break first. Faces that fall out of
    every part join the part of their nearest neighbour at the previous radius, or
    become noise when they have none. Returns arrays of ``members``' row indices in
    ``graph``.
    """
    done: list[np.ndarray] = []
    todo = [(np.asarray(members), eps)]
    while todo:
        idx, radius = todo.pop()
        if len(idx) <= limit or radius < eps * PEEL_FLOOR:
            done.append(idx)
            continue
        smaller = radius * PEEL_STEP
        labels = dbscan_graph(_restrict(graph, idx, smaller), min_samples)
        lost = np.flatnonzero(labels == NOISE)
        if len(lost):
            rows, cols = _nearest(_restrict(graph, idx, radius, rows=lost).tocoo(),
                                  labels != NOISE)
            labels[lost[rows]] = labels[cols]
        for part in range(int(labels.max(initial=-1)) + 1):
            todo.append((idx[labels == part], smaller))
    return done


def _radius(vectors: np.ndarray, members: np.ndarray, block: int = 65536) -> float:
    """Largest distance from the members' mean, read in blocks (a giant component's
    vectors copied whole would be hundreds of megabytes)."""
    centre = np.zeros(vectors.shape[1], np.float64)
    for start in range(0, len(members), block):
        centre += vectors[members[start:start + block]].sum(axis=0, dtype=np.float64)
    centre /= len(members)
    far = 0.0
    for start in range(0, len(members), block):
        v = vectors[members[start:start + block]]
        far = max(far, float(np.linalg.norm(v - centre, axis=1).max()))
    return far


def guard_split(  # noqa: C901 -- one pass over clusters; the branches are its cases
    vectors: np.ndarray,
    labels: np.ndarray,
    params: ClusterParams,
    graph: sp.csr_matrix | None = None,
    photos: np.ndarray | None = None,
) -> np.ndarray:
    """Re-cut every cluster that is not mutually close (see :func:`split_cluster`).

    A cluster whose faces all lie within the cut of each other and that holds no two
    faces of one photo is left alone without computing anything more (its diameter
    bounds every average). A cluster larger than
    ``split_limit`` is first peeled into denser parts (:func:`peel`) when the eps-graph
    is given. Parts smaller than ``min_samples`` become noise, as DBSCAN would call them.
    """
    cut = params.split_eps or params.eps
    out = labels.copy()
    next_label = int(labels.max(initial=-1)) + 1
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    bounds = np.flatnonzero(np.diff(sorted_labels)) + 1
    clashing = np.zeros(0, np.int64)
    if photos is not None:
        a, b = shared_photo_pairs(photos)
        clashing = np.unique(labels[a][(labels[a] == labels[b]) & (labels[a] != NOISE)])
    for members in np.split(order, bounds):
        if len(members) < 2 or labels[members[0]] == NOISE:
            continue
        clash = bool(np.isin(labels[members[0]], clashing))
        if not clash and (len(members) < 3 or 2 * _radius(vectors, members) <= cut):
            continue  # diameter <= cut and no photo twice: nothing to split
        ph = None if photos is None else photos[members]
        if graph is not None and len(members) > params.split_limit:
            sub = np.full(len(members), NOISE, dtype=np.int64)
            offset = 0
            local = _restrict(graph, members, params.eps)
            for part in peel(local, np.arange(len(members)), params.eps, params.split_limit,
                             params.min_samples):
                piece = split_cluster(vectors[members[part]], cut, params.split_limit,
                                      photos=None if ph is None else ph[part])
                sub[part] = piece + offset
                offset += int(piece.max(initial=-1)) + 1
            del local
            sub = _dense_parts(sub)
        else:
            sub = split_cluster(vectors[members], cut, params.split_limit, photos=ph)
        if sub.max() == 0 and (sub == NOISE).sum() == 0:
            continue
        sizes = np.bincount(sub[sub != NOISE], minlength=int(sub.max(initial=-1)) + 1)
        keep = (sub != NOISE) & (sizes[np.clip(sub, 0, None)] >= max(2, params.min_samples))
        out[members[~keep]] = NOISE
        big = np.flatnonzero(sizes >= max(2, params.min_samples))
        # The largest part keeps the label; the others get fresh ones.
        for rank, part in enumerate(big[np.argsort(-sizes[big], kind="stable")]):
            if rank:
                out[members[sub == part]] = next_label
                next_label += 1
        log.debug("cluster_split", faces=len(members), parts=len(big))
    return renumber(out)


def _dense_parts(sub: np.ndarray) -> np.ndarray:
    """Renumber part labels 0..k-1 keeping noise (faces that fell out while peeling)."""
    out = sub.copy()
    real = sub != NOISE
    if real.any():
        out[real] = np.unique(sub[real], return_inverse=True)[1]
    return out


def drop_same_photo(graph: sp.csr_matrix, photos: np.ndarray) -> sp.csr_matrix:
    """The graph without edges between faces of one photo (they are two people)."""
    rows = np.repeat(np.arange(graph.shape[0]), np.diff(graph.indptr))
    ph_r, ph_c = photos[rows], photos[graph.indices]
    same = (ph_r == ph_c) & (ph_r >= 0)
    if not same.any():
        return graph
    g = sp.csr_matrix((graph.data[~same], (rows[~same], graph.indices[~same])),
                      shape=graph.shape)
    g.sort_indices()
    return g


def cluster_faces(vectors: np.ndarray, params: ClusterParams, photos=None,
                  scores=None, *, links: Links | None = None) -> np.ndarray:
    """Cluster unit face vectors into people: int64 labels, -1 = noise.

    DBSCAN on the sparse eps-graph, then the chaining guard, then the re-join of
    fragments the graph failed to connect, then the re-cut of blobs of many people.
    Never builds an n x n matrix: the graph is O(n * max_neighbours), the guard's
    pairwise work is bounded by ``split_limit`` per cluster and the re-join works on
    cluster sums.

    ``photos`` (optional, one id per face; negative = unknown) says which faces share a
    photo: such faces are two people, so no step puts them in one cluster
    (:mod:`.constraints`). ``scores`` (optional, the detector's score per face) keeps
    faces below ``params.weak_score`` out of the clustering; they join a person only
    by a clear vote afterwards (:mod:`.quality`). ``links`` (the user's answers as
    must-link / cannot-link rows, :mod:`.links`) are obeyed last, before the same-photo
    rule: an answer outranks any distance.
    """
    v = np.asarray(vectors, dtype=np.float32)  # no copy for float32 (or a float32 memmap)
    ph = as_photos(photos, len(v))
    weak = weak_faces(scores, params.weak_score)
    if weak is None or not weak.any() or weak.all():
        labels, graph = _cluster(v, params, ph)
        strong = np.arange(len(v))
    else:
        strong = np.flatnonzero(~weak)
        labels = np.full(len(v), NOISE, np.int64)
        labels[strong], graph = _cluster(v[strong], params,
                                         None if ph is None else ph[strong])
        labels = attach(v, labels, weak, params.split_eps or params.eps, params.vote_k,
                        params.vote_share, max(2, params.min_samples), ph)
    if params.blob_size > 0 or params.blob_agree > 0:
        agreement = cohesion = None
        if params.blob_agree > 0:
            # On the strong faces' graph: weak faces joined by vote have no edges there.
            agreement = cluster_agreement(graph, labels[strong], params.blob_agree_k,
                                          params.blob_agree_size, params.blob_agree_max)
        if params.blob_whole > 0:
            cohesion = cluster_cohesion(graph, labels[strong])
        labels = split_blobs(v, labels, ph, size=params.blob_size,
                             max_spread=params.blob_spread, cut=params.blob_cut,
                             min_size=params.min_samples, limit=params.split_limit,
                             large=params.blob_large,
                             large_spread=params.blob_large_spread,
                             agreement=agreement, min_agree=params.blob_agree,
                             agree_spread=params.blob_agree_spread,
                             cohesion=cohesion, whole=params.blob_whole,
                             whole_spread=params.blob_whole_spread)
    if params.merge_eps > 0:
        labels = merge_fragments(v, labels, graph, params.merge_eps, params.merge_share,
                                 ph, rows=None if len(strong) == len(v) else strong)
    if params.stray_k > 0:
        # On the strong faces only: the graph is theirs (poor faces joined by vote).
        # All strong (the usual case): pass v itself, not a copy (512 MB at 1M faces).
        def pick(a: np.ndarray) -> np.ndarray:
            return a if len(strong) == len(v) else a[strong]

        labels[strong] = join_strays(graph, labels[strong], params.stray_k,
                                     params.stray_share, pick(v), params.merge_eps,
                                     min_back=params.stray_back,
                                     photos=None if ph is None else pick(ph))
    if links:
        labels = apply_links(labels, v, links)
    if ph is not None:
        labels = enforce(labels, ph, v)
    return renumber(_drop_small(labels, params.min_samples))


def _cluster(v: np.ndarray, params: ClusterParams, ph: np.ndarray | None
             ) -> tuple[np.ndarray, sp.csr_matrix]:
    """Graph, DBSCAN, guard and re-join (see :func:`cluster_faces`); the labels and the
    graph (without same-photo edges), which the blob test reads."""
    graph = eps_graph(v, params.eps, params.max_neighbours, params.index)
    if ph is not None:
        graph = drop_same_photo(graph, ph)
    labels = dbscan_graph(graph, params.min_samples)
    if params.guard == "split":
        labels = guard_split(v, labels, params, graph, photos=ph)
    elif params.guard != "none":
        raise ValueError(f"unknown chaining guard {params.guard!r} (use 'split' or 'none')")
    if params.rejoin_eps > 0:
        labels = rejoin(v, labels, graph, params.rejoin_eps,
                        nearest=params.rejoin_nearest, min_size=params.min_samples,
                        index=params.index, photos=ph)
    return labels, graph


def _drop_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Clusters left with fewer than ``min_size`` (at least 2) faces become noise."""
    out = labels.copy()
    real = out != NOISE
    if real.any():
        sizes = np.bincount(out[real])
        small = sizes[out[real]] < max(2, min_size)
        idx = np.flatnonzero(real)
        out[idx[small]] = NOISE
    return out


DLIB_RAW_NORM = 1.45
"""Typical length of a raw dlib descriptor (measured on LFW faces); ours are unit length."""
DLIB_THRESHOLD = 0.6 / DLIB_RAW_NORM
"""dlib's published same-person threshold (L2 0.6 on raw descriptors), on unit vectors."""
SFACE_THRESHOLD = float(np.sqrt(2 - 2 * 0.363))
"""OpenCV's published SFace threshold (cosine 0.363) as L2 on unit vectors: 1.129."""

_DLIB = ClusterParams(eps=0.37, min_samples=2, guard="split", split_eps=0.365, rejoin_eps=0.355,
                      weak_score=0.90, blob_size=20, blob_spread=0.32, blob_cut=0.28,
                      blob_large=60, blob_large_spread=0.32, blob_agree=0.30,
                      blob_agree_size=10, blob_agree_max=80, blob_agree_k=20,
                      blob_agree_spread=0.32, blob_whole=0.5,
                      blob_whole_spread=0.35, merge_eps=0.40,
                      merge_share=0.7, stray_k=10, stray_share=0.8, stray_back=2)
"""Measured with the YuNet + dlib engine: eps, split and re-join on LFW-dev
(bench/cluster_quality.py), the poor-face and blob settings on Families In the Wild
train (bench/family_quality.py); bench/CLUSTERING.md."""


def with_eps(params: ClusterParams, eps: float) -> ClusterParams:
    """The same settings at another ``eps``, the split and re-join cuts keeping their
    ratio to it: a user who asks for a stricter eps must not have a re-join at the old
    distance undo it."""
    scale = eps / params.eps
    return replace(params, eps=eps, split_eps=params.split_eps * scale,
                   rejoin_eps=params.rejoin_eps * scale, blob_spread=params.blob_spread * scale,
                   blob_cut=params.blob_cut * scale,
                   blob_large_spread=params.blob_large_spread * scale,
                   blob_agree_spread=params.blob_agree_spread * scale,
                   blob_whole_spread=params.blob_whole_spread * scale,
                   merge_eps=params.merge_eps * scale)


def default_params(engine_id: str) -> ClusterParams:
    """The clustering defaults for an engine id (``<detector>+<embedder>``).

    dlib ResNet: measured on LFW-dev (bench/CLUSTERING.md): DBSCAN eps 0.37,
    min_samples 2, average-linkage split at 0.365 -- the best pairwise F found (0.939,
    BCubed 0.933; the settings within 0.005 of it differ by one borderline pair of a
    person's photos, and this one keeps both photos of every person in
    ``photos/known``). SFace: not measurable here (no model), so derived: the dlib
    values are fractions of dlib's published threshold; the same fractions of SFace's
    published threshold give its eps and split. Raises ValueError for an unknown embedder.

    Poor faces (YuNet score below 0.90) and the blob re-cut were measured on Families In
    the Wild with dlib; the score threshold applies to YuNet only (dlib HOG reports
    another scale) and the blob spreads and agreement to dlib only (not measured for
    SFace).
    """
    if not engine_id.startswith("yunet"):
        # The poor-face threshold is a YuNet score; dlib HOG's score is another scale.
        return replace(_embedder_params(engine_id), weak_score=0.0)
    return _embedder_params(engine_id)


def _embedder_params(engine_id: str) -> ClusterParams:
    if engine_id.endswith("+dlib-resnet-v1"):
        return _DLIB
    if engine_id.endswith("+sface-2021dec"):
        scale = SFACE_THRESHOLD / DLIB_THRESHOLD
        return replace(_DLIB, eps=round(_DLIB.eps * scale, 2),
                       split_eps=round(_DLIB.split_eps * scale, 2),
                       rejoin_eps=round(_DLIB.rejoin_eps * scale, 2),
                       # Spreads do not scale linearly between models: off until measured
                       # (the agreement test's re-cut is a distance too).
                       blob_size=0, blob_large=0, blob_agree=0.0,
                       # The second pass's cut is a dlib distance too: off until measured,
                       # and so are the strays, capped by it.
                       merge_eps=0.0, stray_k=0)
    raise ValueError(f"no clustering defaults for engine {engine_id!r} "
                     "(known embedders: dlib-resnet-v1, sface-2021dec)")


def configured_params(engine_id: str, clustering: ClusterConfig) -> ClusterParams:
    """The engine's measured defaults with the user's ``[clustering]`` overrides: what
    every clustering of a library uses (and what a split is made stricter than)."""
    params = default_params(engine_id)
    if clustering.eps > 0:
        params = with_eps(params, clustering.eps)
    if clustering.min_samples > 0:
        params = replace(params, min_samples=clustering.min_samples)
    return params
