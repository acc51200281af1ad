"""Poor faces join a person only when confident; they never seed or bridge one.

Small, blurred, turned or half-hidden faces give poor embeddings that sit between
people and glue them together. Of what the store keeps per face (box, five landmarks,
detector score), the detector's score is the signal that predicts it: on the Families
In the Wild bench, faces scored below 0.90 end up with the wrong person five times as
often as faces above 0.935, while box size and the landmarks' yaw barely matter
(``bench/CLUSTERING.md``). Sharpness would help a little but is not stored.

So faces below ``ClusterParams.weak_score`` are left out of the clustering (they make
no core point, no chain and no average) and afterwards join a person only by a clear
vote of their nearest clustered faces, never one with a face in the same photo.
"""

from __future__ import annotations

import numpy as np

from daemon.cluster.neighbours import build_index, search

NOISE = -1


def weak_faces(scores: np.ndarray | None, threshold: float) -> np.ndarray | None:
    """Mask of faces whose detector score is below ``threshold`` (None: no scores/off)."""
    if scores is None or threshold <= 0:
        return None
    s = np.asarray(scores, dtype=np.float64)
    return ~(s >= threshold)  # NaN counts as weak


def attach(vectors: np.ndarray, labels: np.ndarray, weak: np.ndarray, eps: float,
           k: int, share: float, min_votes: int, photos: np.ndarray | None) -> np.ndarray:
    """Labels with each weak face (label ignored) given the cluster that holds at least
    ``min_votes`` and ``share`` of its ``k`` nearest strong faces within ``eps``, unless
    that cluster already has a face of its photo; otherwise noise."""
    out = labels.copy()
    out[weak] = NOISE
    strong = np.flatnonzero(~weak)
    queries = np.flatnonzero(weak)
    if len(strong) == 0 or len(queries) == 0:
        return out
    dist, idx = search(build_index(vectors[strong]), vectors[queries], min(k, len(strong)))
    near = np.where((idx >= 0) & (dist <= eps), out[strong[np.clip(idx, 0, None)]], -2)
    taken: set[tuple[int, int]] = set()
    if photos is not None:
        placed = out != NOISE
        taken = set(zip(out[placed].tolist(), photos[placed].tolist(), strict=True))
    # Strongest-evidence faces first, so two faces of one photo compete fairly.
    votes = []
    for q, row in zip(queries, near, strict=True):
        within = row[row != -2]
        labelled = within[within != NOISE]
        if len(labelled) == 0:
            continue
        ids, counts = np.unique(labelled, return_counts=True)
        best = int(np.argmax(counts))
        if counts[best] >= min_votes and counts[best] >= share * len(within):
            votes.append((-int(counts[best]), int(q), int(ids[best])))
    for _, q, c in sorted(votes):
        key = (c, int(photos[q])) if photos is not None else None
        if key is not None and (key in taken):
            continue
        out[q] = c
        if key is not None and photos[q] >= 0:
            taken.add(key)
    return out
