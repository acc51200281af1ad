"""Neighbourhood agreement (daemon/cluster/agree.py) and the blob test built on it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from daemon.cluster import cluster_faces, default_params, pairwise_scores
from daemon.cluster.agree import cluster_agreement, edge_agreement, nearest_lists
from daemon.cluster.neighbours import eps_graph

PARAMS = default_params("yunet-2023mar+dlib-resnet-v1")


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def _crowd(rng, people: int, faces: int, centres: float, within: float):
    """Many people whose centres are squeezed together (like babies in dlib's space)."""
    centre = _unit(rng.normal(size=128))
    heads = _unit(centre + rng.normal(scale=centres, size=(people, 128)))
    vectors = np.concatenate([_unit(h + rng.normal(scale=within, size=(faces, 128)))
                              for h in heads])
    return vectors, np.repeat(np.arange(people), faces)


def test_lists_and_edge_agreement_match_a_brute_force_count() -> None:
    v = _unit(np.random.default_rng(0).normal(size=(120, 8)))
    g = eps_graph(v, 0.8, 64)
    k = 5
    d = np.linalg.norm(v[:, None] - v[None], axis=2).astype(np.float32)
    near = [sorted((j for j in range(len(v)) if j != i and d[i, j] <= 0.8),
                   key=lambda j, i=i: (d[i, j], j))[:k] for i in range(len(v))]
    lists = nearest_lists(g, np.arange(len(v)), k)
    assert [r[1:][r[1:] >= 0].tolist() for r in lists] == near
    assert lists[:, 0].tolist() == list(range(len(v)))
    a = np.repeat(np.arange(len(v)), np.diff(g.indptr))
    b = g.indices.astype(np.int64)
    got = edge_agreement(g, a, b, k)
    for e, (i, j) in enumerate(zip(a, b, strict=True)):
        left, right = {i, *near[i]}, {j, *near[j]}
        assert got[e] == pytest.approx(len(left & right) / len(left | right))


def test_one_person_agrees_a_crowd_of_look_alikes_does_not() -> None:
    rng = np.random.default_rng(1)
    person = _unit(_unit(rng.normal(size=128)) + rng.normal(scale=0.013, size=(12, 128)))
    crowd, _ = _crowd(rng, 60, 3, 0.02, 0.012)
    v = np.r_[person, crowd]
    g = eps_graph(v, PARAMS.eps, 64)
    # Label the person and an arbitrary 18 faces of the crowd as two clusters.
    labels = np.full(len(v), -1)
    labels[:12] = 0
    labels[12 + rng.choice(len(crowd), 18, replace=False)] = 1
    agree = cluster_agreement(g, labels, 20, 10, 40)
    assert agree[0] > 0.8
    assert agree[1] < 0.3
    # Outside [min_size, max_size] nothing is measured.
    assert np.isnan(cluster_agreement(g, labels, 20, 13, 40)[0])
    assert np.isnan(cluster_agreement(g, labels, 20, 10, 17)[1])


def test_an_album_of_look_alikes_is_re_cut_only_with_the_agreement_test() -> None:
    # A crowd of 60 squeezed people: the spread test (>= 20 faces above 0.34) misses the
    # 18-face album it leaves; the agreement test does not.
    vectors, truth = _crowd(np.random.default_rng(0), 60, 3, 0.02, 0.012)
    without = cluster_faces(vectors, replace(PARAMS, blob_agree=0.0))
    assert pairwise_scores(truth, without).precision < 0.6
    labels = cluster_faces(vectors, PARAMS)
    assert pairwise_scores(truth, labels).precision == 1.0
    assert pairwise_scores(truth, labels).recall == 1.0
    # Its spread is 0.34: a floor above that leaves it (tight clusters are not tested).
    floor = cluster_faces(vectors, replace(PARAMS, blob_agree_spread=0.36))
    assert (floor == without).all()


def test_agreement_applies_only_where_measured() -> None:
    assert PARAMS.blob_agree == pytest.approx(0.30)
    assert default_params("yunet-2023mar+sface-2021dec").blob_agree == 0.0
