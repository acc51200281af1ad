"""The re-join pass: exact average linkage from cluster sums, on candidate pairs only."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist
from synthetic import blobs, same_partition, unit

from daemon.cluster import ClusterParams, cluster_faces, eps_graph
from daemon.cluster.neighbours import IndexParams
from daemon.cluster.rejoin import rejoin


def _no_edges(n: int) -> sp.csr_matrix:
    return sp.csr_matrix((n, n), dtype=np.float32)


def _as_singletons(labels: np.ndarray) -> np.ndarray:
    out = labels.copy()
    alone = out == -1
    out[alone] = out.max(initial=-1) + 1 + np.arange(alone.sum())
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("cut", [0.35, 0.5, 0.7])
def test_from_single_faces_with_every_pair_a_candidate_it_is_average_linkage(
    seed: int, cut: float
) -> None:
    # The reference: scipy's sequential average linkage on squared distances, cut at cut^2.
    x, _ = blobs(12, 6, 0.08, seed=seed)
    n = len(x)
    everything = sp.csr_matrix(np.ones((n, n), np.float32) - np.eye(n, dtype=np.float32))
    got = rejoin(x, np.full(n, -1), everything, cut, nearest=0, min_size=1)
    want = fcluster(linkage(pdist(x, "sqeuclidean"), "average"), cut * cut, "distance")
    assert same_partition(_as_singletons(got), want)


def test_fragments_the_graph_left_apart_are_joined_by_their_centres() -> None:
    x, truth = blobs(5, 12, 0.03, seed=3)
    # Each person cut into two fragments with no edge between them, as a search that
    # missed those pairs would leave them.
    fragments = truth * 2 + (np.arange(len(x)) % 2)
    got = rejoin(x, fragments, _no_edges(len(x)), 0.3, nearest=2)
    assert same_partition(got, truth)
    # Without the centre candidates there is nothing to consider: unchanged.
    alone = rejoin(x, fragments, _no_edges(len(x)), 0.3, nearest=0)
    assert same_partition(alone, fragments)


def test_strangers_and_far_noise_stay_apart() -> None:
    x, truth = blobs(4, 10, 0.03, seed=4)
    far = unit(np.random.default_rng(5).normal(size=(1, x.shape[1])))
    x = np.r_[x, far]
    labels = np.r_[truth, -1]
    got = rejoin(x, labels, eps_graph(x, 0.3, 16), 0.3, nearest=4)
    assert same_partition(got, labels)


def test_groups_below_min_size_are_noise() -> None:
    x, _ = blobs(1, 2, 0.01, seed=6)
    got = rejoin(x, np.array([-1, -1]), eps_graph(x, 0.3, 4), 0.3, nearest=1, min_size=3)
    assert got.tolist() == [-1, -1]
    got = rejoin(x, np.array([-1, -1]), eps_graph(x, 0.3, 4), 0.3, nearest=1, min_size=2)
    assert got.tolist() == [0, 0]


def test_it_repairs_a_clustering_on_an_approximate_graph() -> None:
    # Tight people, each face's neighbours sought in too few cells: the graph misses
    # close pairs and DBSCAN splits people; with the re-join they are whole again.
    x, truth = blobs(150, 8, 0.04, seed=7)
    coarse = IndexParams(exact_limit=0, nprobe=2)  # a quarter of the default probes
    base = ClusterParams(eps=0.45, min_samples=2, index=coarse)
    torn = cluster_faces(x, base)
    assert not same_partition(torn, truth)  # the premise: this search does miss pairs
    whole = cluster_faces(x, ClusterParams(eps=0.45, min_samples=2, rejoin_eps=0.4,
                                           index=coarse))
    assert same_partition(whole, truth)
