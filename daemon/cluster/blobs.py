"""No blob albums: clusters of many look-alike people are re-cut or left unassigned.

dlib's embeddings put all babies and toddlers close together, and relatives close to
each other, so average linkage can build one album of dozens of different children. A
real person's faces, even across years, are tighter on average than such a blob: on
Families In the Wild, clusters of ten faces or more that are one person have a root
mean square distance between their faces of about 0.30 (90 % below 0.33), blobs of many
people 0.34 and more (``bench/CLUSTERING.md``). That spread is exact and cheap from a
cluster's vector sum: mean squared distance = 2 - 2 (|sum|^2 - n) / (n (n - 1)).

A cluster of at least ``blob_size`` faces whose spread exceeds ``blob_spread`` is
re-cut by average linkage (never joining faces of one photo) at ``blob_cut``; parts
smaller than ``min_size`` become noise. A face left out is one ``facecluster name``
away; a stranger in an album is worse.
"""

from __future__ import annotations

import numpy as np
import structlog

from daemon.cluster.constraints import constrained_average_linkage

log = structlog.get_logger(__name__)

NOISE = -1


def spread(vectors: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(faces per cluster, root mean square distance between a cluster's faces)."""
    real = labels != NOISE
    k = int(labels.max(initial=-1)) + 1
    sums = np.zeros((k, vectors.shape[1]), np.float64)
    np.add.at(sums, labels[real], vectors[real])
    n = np.bincount(labels[real], minlength=k).astype(np.float64)
    pairs = np.maximum(n * (n - 1), 1)
    mean_cos = ((sums * sums).sum(axis=1) - n) / pairs
    return n, np.sqrt(np.clip(2 - 2 * mean_cos, 0, None)) * (n > 1)


def split_blobs(vectors: np.ndarray, labels: np.ndarray, photos: np.ndarray | None, *,
                size: int, max_spread: float, cut: float, min_size: int,
                limit: int = 3000) -> np.ndarray:
    """Labels with every blob (see the module docstring) re-cut at ``cut``."""
    out = labels.copy()
    if size <= 0 or len(out) == 0:
        return out
    n, rms = spread(vectors, out)
    blobs = np.flatnonzero((n >= size) & (rms > max_spread) & (n <= limit))
    nxt = int(out.max(initial=-1)) + 1
    for c in blobs:
        members = np.flatnonzero(labels == c)
        sub = constrained_average_linkage(
            vectors[members], cut, None if photos is None else photos[members])
        sizes = np.bincount(sub)
        ok = sizes[sub] >= max(2, min_size)
        out[members[~ok]] = NOISE
        out[members[ok]] = sub[ok] + nxt
        nxt += int(sub.max()) + 1
        log.debug("blob_split", faces=len(members), spread=round(float(rms[c]), 3),
                  parts=int((sizes >= max(2, min_size)).sum()))
    return out
