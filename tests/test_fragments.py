"""The second linkage pass (cluster/fragments.py) and cohesion (cluster/cohesion.py)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from daemon.cluster.cohesion import cluster_cohesion
from daemon.cluster.fragments import merge_fragments
from daemon.cluster.neighbours import eps_graph


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def _around(centre: np.ndarray, n: int, rng, scale: float) -> np.ndarray:
    return _unit(centre + rng.normal(scale=scale, size=(n, len(centre))))


def _graph(edges: list[tuple[int, int]], n: int) -> sp.csr_matrix:
    a, b = np.array(edges).T
    g = sp.csr_matrix((np.full(2 * len(a), 0.1, np.float32), (np.r_[a, b], np.r_[b, a])),
                      shape=(n, n))
    g.sort_indices()
    return g


def test_cohesion_is_the_share_of_edges_that_stay_inside() -> None:
    # Cluster 0 = {0, 1, 2}: edges 0-1, 1-2 inside, 2-3 to cluster 1, 2-4 to noise.
    g = _graph([(0, 1), (1, 2), (2, 3), (2, 4), (3, 5)], 6)
    labels = np.array([0, 0, 0, 1, -1, 1])
    out = cluster_cohesion(g, labels)
    assert out[0] == 4 / 6  # 0-1, 1-0, 1-2, 2-1 of 0-1, 1-0, 1-2, 2-1, 2-3, 2-4
    assert out[1] == 2 / 3  # 3-5, 5-3 of those and 3-2
    assert np.isnan(cluster_cohesion(_graph([(0, 1)], 3), np.array([0, 0, 1]))[1])


def _pieces(rng, gap: float):
    """Two pieces of one look (``gap`` apart), 6 faces each."""
    a = _unit(rng.normal(size=128))
    b = _unit(a + _unit(rng.normal(size=128)) * gap)
    return np.r_[_around(a, 6, rng, 0.012), _around(b, 6, rng, 0.012)]


def test_pieces_that_link_only_to_each_other_merge() -> None:
    x = _pieces(np.random.default_rng(1), 0.28)
    labels = np.repeat([0, 1], 6)
    g = eps_graph(x, 0.37, 64)
    merged = merge_fragments(x, labels, g, cut=0.40, share=0.7)
    assert len(set(merged.tolist())) == 1
    # Too far apart on average: they stay apart.
    assert len(set(merge_fragments(x, labels, g, cut=0.2, share=0.7).tolist())) == 2


def test_a_photo_of_both_keeps_pieces_apart() -> None:
    x = _pieces(np.random.default_rng(1), 0.28)
    labels = np.repeat([0, 1], 6)
    photos = np.arange(12)
    photos[6] = photos[0]  # faces 0 and 6 are in one photo: two people
    merged = merge_fragments(x, labels, eps_graph(x, 0.37, 64), cut=0.40, share=0.7,
                             photos=photos)
    assert merged[0] != merged[6]


def test_look_alikes_in_a_crowd_do_not_merge() -> None:
    # Piece A between B and C, each equally close: A's leaving edges split between them.
    rng = np.random.default_rng(2)
    a = _unit(rng.normal(size=128))
    b = _unit(a + _unit(rng.normal(size=128)) * 0.25)
    c = _unit(a + _unit(rng.normal(size=128)) * 0.25)
    x = np.r_[_around(a, 6, rng, 0.012), _around(b, 6, rng, 0.012),
              _around(c, 6, rng, 0.012)]
    labels = np.repeat([0, 1, 2], 6)
    g = eps_graph(x, 0.37, 64)
    merged = merge_fragments(x, labels, g, cut=0.40, share=0.7)
    assert len(set(merged.tolist())) == 3
    assert len(set(merge_fragments(x, labels, g, cut=0.40, share=0.3).tolist())) < 3
