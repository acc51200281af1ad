"""Second linkage pass: merge the pieces of one person that link mostly to each other.

Why: the first pass is conservative on purpose -- the chaining guard's average linkage,
the blob re-cut and the photo constraints would rather leave one person in two albums
than put two people in one. A person with many varied photos pays for it: the guard
cuts them where their photos fall into sub-modes (another decade, glasses, a beard), and
the pieces stay apart, since the re-join (:mod:`.rejoin`) uses a cut below the guard's.
Apple's published pipeline does the same thing in two passes: a conservative first one,
then a second linkage pass between groups.

Two clusters A and B merge here when

- their average linkage (root mean squared distance between their faces, exact from the
  clusters' vector sums) is within ``cut``, and
- they link to each other more strongly than to anyone else: of the eps-graph edges
  leaving A for other faces, at least ``share`` end in B, and the same from B to A. Two
  look-alike strangers in a crowd (children of several families) each have close pairs
  with many others; one person's two pieces mostly have each other; and
- no photo holds a face of each (two faces of one photo are two people).

Merges run in rounds of reciprocal best pairs (by shared edges), so a person in several
pieces is put back together step by step; the counts are recomputed each round.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from daemon.cluster.constraints import conflict_keys
from daemon.cluster.edges import label_pairs

NOISE = -1


def _edge_counts(graph: sp.csr_matrix, labels: np.ndarray, k: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, edges from a to b) for every ordered pair of distinct clusters joined by an
    edge, and per cluster the edges leaving it (to other clusters or to noise)."""
    keys, leaving = [], np.zeros(k, np.int64)
    for a, b in label_pairs(graph, labels):
        out = (a != NOISE) & (a != b)
        leaving += np.bincount(a[out], minlength=k)
        both = out & (b != NOISE)
        keys.append(a[both].astype(np.int64) * k + b[both])
    key, count = np.unique(np.concatenate(keys) if keys else np.zeros(0, np.int64),
                           return_counts=True)
    return key // k, key % k, count, leaving


def merge_fragments(vectors: np.ndarray, labels: np.ndarray, graph: sp.csr_matrix,
                    cut: float, share: float, photos: np.ndarray | None = None,
                    rows: np.ndarray | None = None, rounds: int = 20) -> np.ndarray:
    """Labels with the clusters merged that link mostly to each other (module docstring).

    ``graph`` is the symmetric eps-graph of the faces at ``rows`` (all faces when None:
    poor faces, which join by vote, have no edges); ``labels`` uses -1 for noise, which
    never merges. A merged cluster keeps the smaller label; labels are not renumbered.
    """
    out = np.asarray(labels, np.int64).copy()
    k = int(out.max(initial=-1)) + 1
    if k < 2 or graph.nnz == 0:
        return out
    real = np.flatnonzero(out != NOISE)
    # One sparse product (np.add.at over a million rows of 128 would take seconds); kept
    # in float32 (hundreds of thousands of clusters at a million faces), dots in float64.
    member = sp.csr_matrix((np.ones(len(real), np.float32), (out[real], real)),
                           shape=(k, len(out)))
    sums = np.asarray(member @ np.asarray(vectors, np.float32), np.float32)
    del member
    counts = np.bincount(out[real], minlength=k).astype(np.float64)
    threshold = 1.0 - cut * cut / 2.0  # mean cosine similarity at that linkage
    for _ in range(rounds):
        a, b, shared, leaving = _edge_counts(graph, out if rows is None else out[rows], k)
        strength = shared / np.maximum(leaving[a], 1)
        # Each cluster's strongest partner by its share of leaving edges.
        order = np.lexsort((b, -strength, a))
        first = np.r_[True, a[order][1:] != a[order][:-1]] if len(a) else np.zeros(0, bool)
        best = np.full(k, -1, np.int64)
        best_share = np.zeros(k)
        best[a[order][first]] = b[order][first]
        best_share[a[order][first]] = strength[order][first]
        x = np.flatnonzero((best >= 0) & (best_share >= share))
        y = best[x]
        pick = (x < y) & (best[y] == x) & (best_share[y] >= share)
        x, y = x[pick], y[pick]
        sim = np.einsum("ij,ij->i", sums[x], sums[y], dtype=np.float64) / (counts[x] * counts[y])
        ok = sim >= threshold
        if photos is not None and ok.any():
            clash = conflict_keys(out, photos, k)
            ok &= ~np.isin(x * np.int64(k) + y, clash)
        x, y = x[ok], y[ok]
        if not len(x):
            break
        moved = np.arange(k)
        moved[y] = x
        out = np.where(out == NOISE, NOISE, moved[np.clip(out, 0, None)])
        sums[x] += sums[y]
        counts[x] += counts[y]
        sums[y] = 0
        counts[y] = 0
    return out

