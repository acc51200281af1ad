"""The eps-graph's edges as pairs of cluster labels, read in blocks of rows.

Why one helper: the re-join, the cohesion test and the second linkage pass all ask the
same question of the graph -- which cluster does each end of an edge belong to -- and
at a million faces the graph holds tens of millions of entries, so none of them may
expand it whole. Each reads it here, one block of rows at a time.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp

BLOCK = 65536
"""Rows per block: a few million entries at a time, whatever the graph's size."""


def label_pairs(graph: sp.csr_matrix, labels: np.ndarray, block: int = BLOCK
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(label of the row's face, label of the column's face) for every stored entry of
    ``graph``, one block of rows at a time. A symmetric graph stores each undirected
    edge at both ends, so each appears twice, once in each direction."""
    indptr, indices = graph.indptr, graph.indices
    for start in range(0, graph.shape[0], block):
        end = min(graph.shape[0], start + block)
        rows = np.repeat(np.arange(start, end), np.diff(indptr[start:end + 1]))
        yield labels[rows], labels[indices[indptr[start]:indptr[end]]]
