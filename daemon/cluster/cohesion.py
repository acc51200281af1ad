"""Cohesion: do a cluster's close pairs stay inside it, or reach out to other people?

Why: the blob re-cut (:mod:`.blobs`) finds clusters of many look-alike people by their
spread and by their neighbour lists, and cuts them at a tight distance. A real person
with many varied photos (a parent across years, a politician across a hundred news
photos) spreads as wide and, past a few dozen photos, has neighbour lists that agree
as little. Cut at that tight distance such a person falls into dozens of small pieces
and noise (issue 19: 149 photos over 27 albums, the largest holding 19 %), and nothing
merges them again. What the spread and the lists do not see is where the faces' close
pairs lead: a blob of look-alike children sits in a crowd, and most faces within eps of
its faces belong to *other* clusters (the other children); one person's pieces link to
each other more strongly than to anyone else.

The cohesion of a cluster is the share of the eps-graph edges leaving its faces that end
at a face of the same cluster. Measured on Families In the Wild train plus LFW-dev's
people with >= 20 photos (``bench/CLUSTERING.md``): every blob the re-cut acts on (majority
person under half its faces) has cohesion at most 0.37, while the one-person clusters it
acts on, and every LFW person with >= 20 photos, have 0.57 or more. The graph is the one
the clustering already has, so this is one pass over its entries.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from daemon.cluster.edges import label_pairs

NOISE = -1


def cluster_cohesion(graph: sp.csr_matrix, labels: np.ndarray) -> np.ndarray:
    """Per cluster label 0..max: the share of its faces' graph edges that stay inside it
    (NaN for a cluster with no edge). Edges to noise faces count as leaving."""
    labels = np.asarray(labels, np.int64)
    m = int(labels.max(initial=-1)) + 1
    inside = np.zeros(m, np.int64)
    total = np.zeros(m, np.int64)
    for a, b in label_pairs(graph, labels):
        real = a != NOISE
        total += np.bincount(a[real], minlength=m)
        inside += np.bincount(a[real & (a == b)], minlength=m)
    out = np.full(m, np.nan)
    has = total > 0
    out[has] = inside[has] / total[has]
    return out
