"""No blob albums: clusters of many look-alike people are re-cut or left unassigned.

dlib's embeddings put all babies and toddlers close together, and relatives close to
each other, so average linkage can build one album of dozens of different children. A
real person's faces, even across years, are tighter on average than most such blobs:
on Families In the Wild, clusters of ten faces or more that are one person have a root
mean square distance between their faces of about 0.30 (90 % below 0.33), blobs of many
people about 0.34 (``bench/CLUSTERING.md``). The two overlap, and LFW's adults with a
hundred news photos spread as wide, so the default threshold (0.34) is the lowest that
leaves LFW-dev's scores unchanged: it removes the widest blobs, not all of them. That
spread is exact and cheap from a cluster's vector sum: mean squared distance
= 2 - 2 (|sum|^2 - n) / (n (n - 1)).

A cluster of at least ``blob_size`` faces whose spread exceeds ``blob_spread`` (or of at
least ``blob_large`` faces above ``blob_large_spread``: the more faces, the tighter one
person's average; LFW-dev's 119-photo person spreads 0.28, FIW's 128-face blob 0.34) is
re-cut by average linkage (never joining faces of one photo) at ``blob_cut``; parts
smaller than ``min_size`` become noise. A face left out is one ``facecluster name``
away; a stranger in an album is worse.

So is a cluster of 10-80 faces spreading over 0.32 whose faces do not list each other as
nearest neighbours (:mod:`.agree`): that tells blobs from one person far better than the
spread alone (on Families In the Wild, ROC AUC 0.98 against 0.90 for clusters of >= 10
faces). The spread floor keeps it off tight clusters, which re-cutting at ``blob_cut``
would only break up: synthetic (Gaussian) people, whose neighbour lists agree little
once a person has many more faces than a list holds.
"""

from __future__ import annotations

import numpy as np
import structlog

from daemon.cluster.constraints import constrained_average_linkage

log = structlog.get_logger(__name__)

CORE_SHARE = 0.5
"""A re-cut whose largest part keeps this share of the faces found one person with
outliers, not a blob: the cluster stays whole."""

NOISE = -1


def spread(vectors: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(faces per cluster, root mean square distance between a cluster's faces)."""
    k = int(labels.max(initial=-1)) + 1
    n = np.bincount(labels[labels != NOISE], minlength=k).astype(np.float64)
    sums = np.zeros((k, vectors.shape[1]), np.float64)
    order = np.argsort(labels, kind="stable")
    order = order[labels[order] != NOISE]
    if len(order):
        # One sorted pass in blocks (np.add.at is slow, a full copy large at 1M faces).
        for start in range(0, len(order), 65536):
            part = order[start:start + 65536]
            lab = labels[part]
            heads = np.r_[0, np.flatnonzero(np.diff(lab)) + 1]
            sums[lab[heads]] += np.add.reduceat(vectors[part].astype(np.float64), heads,
                                                axis=0)
    pairs = np.maximum(n * (n - 1), 1)
    mean_cos = ((sums * sums).sum(axis=1) - n) / pairs
    return n, np.sqrt(np.clip(2 - 2 * mean_cos, 0, None)) * (n > 1)


def split_blobs(vectors: np.ndarray, labels: np.ndarray, photos: np.ndarray | None, *,
                size: int, max_spread: float, cut: float, min_size: int,
                limit: int = 3000, large: int = 0, large_spread: float = 0.0,
                agreement: np.ndarray | None = None, min_agree: float = 0.0,
                agree_spread: float = 0.0, cohesion: np.ndarray | None = None,
                whole: float = 0.0, whole_spread: float = 0.0) -> np.ndarray:
    """Labels with every blob (see the module docstring) re-cut at ``cut``.

    With ``agreement`` (per cluster label, NaN = not measured; :mod:`.agree`), a cluster
    whose faces' neighbourhoods agree by less than ``min_agree`` and whose spread exceeds
    ``agree_spread`` is a blob too. With ``cohesion`` (per cluster label;
    :mod:`.cohesion`), a cluster that spreads no wider than ``whole_spread`` and whose
    close pairs stay inside it at least ``whole`` of the time is one person, not a blob
    by its spread: cut at ``cut``, a person with many varied photos falls into dozens of
    pieces. The agreement test still applies to it.
    """
    out = labels.copy()
    if (size <= 0 and agreement is None) or len(out) == 0:
        return out
    n, rms = spread(vectors, out)
    wide = (n >= size) & (rms > max_spread) if size > 0 else np.zeros(len(n), bool)
    if large > 0:
        wide |= (n >= large) & (rms > large_spread)
    if cohesion is not None and whole > 0 and len(cohesion):
        # A wide cluster whose close pairs stay inside it is one varied person -- unless
        # it is wider than a person gets: then it is a whole crowd of look-alikes.
        held = np.zeros(len(n), bool)
        held[:len(cohesion)] = cohesion[:len(n)] >= whole  # NaN compares False
        wide &= ~(held & (rms <= whole_spread))
    if agreement is not None and len(agreement):
        # Not overruled by cohesion: one person's neighbour lists agree (module docstring).
        low = np.zeros(len(n), bool)
        low[:len(agreement)] = agreement[:len(n)] < min_agree  # NaN compares False
        wide |= low & (rms > agree_spread)
    blobs = np.flatnonzero(wide & (n <= limit))
    nxt = int(out.max(initial=-1)) + 1
    for c in blobs:
        members = np.flatnonzero(labels == c)
        sub = constrained_average_linkage(
            vectors[members], cut, None if photos is None else photos[members])
        sizes = np.bincount(sub)
        if sizes.max() >= CORE_SHARE * len(members):
            continue  # one person with a wide spread (a core and its outliers): keep it
        ok = sizes[sub] >= max(2, min_size)
        out[members[~ok]] = NOISE
        out[members[ok]] = sub[ok] + nxt
        nxt += int(sub.max()) + 1
        log.debug("blob_split", faces=len(members), spread=round(float(rms[c]), 3),
                  parts=int((sizes >= max(2, min_size)).sum()))
    return out
