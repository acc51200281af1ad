"""Clustering quality against ground truth: pairwise and BCubed precision, recall and F.

Noise (label ``-1`` in the prediction) counts as a singleton cluster per face: a face the
clusterer declined to place is neither wrongly merged with anybody (no precision loss) nor
placed with its own person (recall loss, unless the person has only that one face).

Both measures are computed from the contingency table of (true class, predicted cluster),
so they are O(n) in memory and time and work at millions of faces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NOISE = -1


@dataclass(frozen=True)
class Scores:
    """Precision, recall and their harmonic mean F, each in 0..1."""

    precision: float
    recall: float

    @property
    def f(self) -> float:
        """The harmonic mean of precision and recall (0 when both are 0)."""
        p, r = self.precision, self.recall
        return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def _codes(values: np.ndarray) -> np.ndarray:
    """Map arbitrary labels (ints or strings) to 0..k-1."""
    return np.unique(np.asarray(values), return_inverse=True)[1].ravel()


def _contingency(truth: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, ...]:
    """Cell counts and the class / cluster sizes of each cell, with noise as singletons."""
    truth = np.asarray(truth)
    predicted = np.asarray(predicted, dtype=np.int64)
    if truth.shape != predicted.shape or truth.ndim != 1:
        raise ValueError(
            f"truth and prediction must be 1-d and the same length, got "
            f"{truth.shape} and {predicted.shape}"
        )
    t = _codes(truth)
    p = predicted.copy()
    noise = p == NOISE
    # Give each noise face a cluster id of its own beyond the real ones.
    p[noise] = p.max(initial=0) + 1 + np.arange(int(noise.sum()))
    p = _codes(p)
    class_size = np.bincount(t)
    cluster_size = np.bincount(p)
    k = len(cluster_size)  # cells are numbered class * k + cluster
    cells, cell_count = np.unique(t.astype(np.int64) * k + p, return_counts=True)
    cell_class, cell_cluster = cells // k, cells % k
    return cell_count, class_size[cell_class], cluster_size[cell_cluster], class_size, cluster_size


def _pairs(counts: np.ndarray) -> float:
    c = counts.astype(np.float64)
    return float((c * (c - 1) / 2).sum())


def pairwise_scores(truth: np.ndarray, predicted: np.ndarray) -> Scores:
    """Pairwise precision/recall over all pairs of faces.

    Precision: of the pairs put in the same cluster, the share that are the same person.
    Recall: of the pairs that are the same person, the share put in the same cluster.
    With no predicted pairs precision is 1 (nothing claimed); with no true pairs recall is 1.
    """
    if len(truth) == 0:
        return Scores(1.0, 1.0)
    cell, _, _, class_size, cluster_size = _contingency(truth, predicted)
    together = _pairs(cell)
    claimed = _pairs(cluster_size)
    true = _pairs(class_size)
    return Scores(together / claimed if claimed else 1.0, together / true if true else 1.0)


def bcubed_scores(truth: np.ndarray, predicted: np.ndarray) -> Scores:
    """BCubed precision/recall: per-face averages, so every face weighs the same.

    For face i with cluster C and class L: precision_i = |C ∩ L| / |C|, recall_i =
    |C ∩ L| / |L| (both count i itself).
    """
    n = len(truth)
    if n == 0:
        return Scores(1.0, 1.0)
    cell, cell_class, cell_cluster, _, _ = _contingency(truth, predicted)
    c = cell.astype(np.float64)
    return Scores(float((c * c / cell_cluster).sum() / n), float((c * c / cell_class).sum() / n))
