"""Clustering, stable person ids, incremental votes and quality metrics on synthetic data."""

from __future__ import annotations

import itertools
import tracemalloc
from dataclasses import replace

import numpy as np
import pytest
from sklearn.cluster import DBSCAN
from synthetic import DIM, blobs, same_partition, unit

from daemon.cluster import (
    ClusterParams,
    FaceIndex,
    IndexParams,
    assign_new,
    bcubed_scores,
    cluster_faces,
    default_params,
    eps_graph,
    pairwise_scores,
    stable_ids,
    with_eps,
)
from daemon.cluster.dbscan import _restrict, dbscan_graph, peel

# -- metrics ----------------------------------------------------------------------------


def test_metrics_on_a_hand_computed_example() -> None:
    truth = np.array(["a", "a", "a", "b", "b"])
    pred = np.array([0, 0, 1, 1, -1])
    pw = pairwise_scores(truth, pred)
    # Claimed pairs (0,1) and (2,3); true pairs: 3 of a + 1 of b; only (0,1) is right.
    assert pw.precision == pytest.approx(1 / 2)
    assert pw.recall == pytest.approx(1 / 4)
    assert pw.f == pytest.approx(2 * 0.5 * 0.25 / 0.75)
    b3 = bcubed_scores(truth, pred)
    assert b3.precision == pytest.approx((1 + 1 + 1 / 2 + 1 / 2 + 1) / 5)
    assert b3.recall == pytest.approx((2 / 3 + 2 / 3 + 1 / 3 + 1 / 2 + 1 / 2) / 5)


def test_metrics_treat_noise_as_singletons() -> None:
    truth = np.array([1, 2, 3, 4])
    all_noise = np.array([-1, -1, -1, -1])
    assert pairwise_scores(truth, all_noise).f == 1.0
    assert bcubed_scores(truth, all_noise).f == 1.0
    one_blob = np.array([0, 0, 0, 0])
    assert pairwise_scores(truth, one_blob).precision == 0.0
    assert bcubed_scores(truth, one_blob).precision == pytest.approx(1 / 4)


def test_metrics_perfect_and_length_mismatch() -> None:
    truth = np.array([5, 5, 7, 7, 7])
    pred = np.array([1, 1, 0, 0, 0])
    assert pairwise_scores(truth, pred).f == 1.0
    assert bcubed_scores(truth, pred).f == 1.0
    with pytest.raises(ValueError, match="same length"):
        pairwise_scores(truth, pred[:3])


# -- the sparse graph and DBSCAN ---------------------------------------------------------


def test_eps_graph_holds_exactly_the_close_pairs() -> None:
    x, _ = blobs(5, 8, 0.15, seed=1)
    eps = 0.6
    g = eps_graph(x, eps, max_neighbours=100)
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    want = (d <= eps) & ~np.eye(len(x), dtype=bool)
    assert np.array_equal(g.toarray() > 0, want & (d > 0)) or np.array_equal(
        _structure(g), want
    )
    assert (g != g.T).nnz == 0


def _structure(g) -> np.ndarray:
    s = np.zeros(g.shape, dtype=bool)
    rows = np.repeat(np.arange(g.shape[0]), np.diff(g.indptr))
    s[rows, g.indices] = True
    return s


def test_eps_graph_keeps_duplicates_as_edges() -> None:
    x, _ = blobs(2, 3, 0.1)
    x = np.r_[x, x[:1]]  # the same face twice (a copied photo): distance 0
    g = eps_graph(x, 0.5, max_neighbours=10)
    assert _structure(g)[0, len(x) - 1]


def _graph_peak_bytes(n: int) -> tuple[int, int]:
    """(nnz, peak traced bytes) of the eps-graph of three huge, tight people."""
    x, _ = blobs(3, n // 3, 0.02, seed=2)  # everyone is within eps of a third of all faces
    eps_graph(x[:10], 0.5, max_neighbours=10)  # warm up imports outside the trace
    tracemalloc.start()
    g = eps_graph(x, 0.5, max_neighbours=10)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return g.nnz, peak


def test_graph_memory_is_sparse_not_n_squared() -> None:
    small_nnz, small_peak = _graph_peak_bytes(3000)
    big_nnz, big_peak = _graph_peak_bytes(12000)
    assert big_nnz <= 2 * 10 * 12000
    # Four times the faces: linear memory grows ~4x, an n x n matrix 16x.
    assert big_peak < 6 * small_peak
    assert big_peak < 12000 * 12000  # a dense float32 matrix would need 4x this


@pytest.mark.parametrize(("eps", "min_samples"), [(0.3, 3), (0.45, 5), (0.6, 2), (0.8, 4)])
def test_dbscan_graph_matches_scikit_learn(eps: float, min_samples: int) -> None:
    x, _ = blobs(12, 10, 0.08, seed=3)
    rng = np.random.default_rng(4)
    x = np.r_[x, unit(rng.normal(size=(30, DIM)))]
    ours = dbscan_graph(eps_graph(x, eps, max_neighbours=len(x)), min_samples)
    ref = DBSCAN(eps=eps, min_samples=min_samples).fit(x).labels_
    # Border faces reachable from two clusters may legitimately differ; compare cores.
    core = np.zeros(len(x), dtype=bool)
    core[DBSCAN(eps=eps, min_samples=min_samples).fit(x).core_sample_indices_] = True
    assert same_partition(ours[core], ref[core])
    assert np.array_equal(ours == -1, ref == -1)


# -- stable person ids -------------------------------------------------------------------


def counter(start: int):
    """A new_id callable handing out start, start + 1, ..."""
    it = itertools.count(start)
    return lambda: next(it)


def test_stable_ids_keep_people_whatever_the_cluster_numbers() -> None:
    previous = {1: 10, 2: 10, 3: 11, 4: 11}
    r = stable_ids([1, 2, 3, 4], [7, 7, 3, 3], previous, set(), set(), counter(100))
    assert r.assignment == previous
    assert r.retired == set()


def test_stable_ids_new_cluster_gets_new_id_in_face_order() -> None:
    previous = {1: 10, 2: 10}
    r = stable_ids([1, 2, 5, 6, 3, 4], [0, 0, 2, 2, 1, 1], previous, set(), set(), counter(100))
    assert r.assignment == {1: 10, 2: 10, 3: 100, 4: 100, 5: 101, 6: 101}


def test_stable_ids_split_keeps_the_id_with_the_larger_part() -> None:
    previous = {1: 10, 2: 10, 3: 10, 4: 10}
    r = stable_ids([1, 2, 3, 4], [0, 1, 1, 1], previous, set(), set(), counter(100))
    assert r.assignment == {1: 100, 2: 10, 3: 10, 4: 10}


def test_stable_ids_merge_retires_the_smaller_person_and_ties_go_to_the_older() -> None:
    previous = {1: 12, 2: 12, 3: 11, 4: 11}
    r = stable_ids([1, 2, 3, 4], [0, 0, 0, 0], previous, set(), set(), counter(100))
    assert set(r.assignment.values()) == {11}
    assert r.retired == {12}
    previous = {1: 12, 2: 12, 3: 12, 4: 11}
    r = stable_ids([1, 2, 3, 4], [0, 0, 0, 0], previous, set(), set(), counter(100))
    assert set(r.assignment.values()) == {12}
    assert r.retired == {11}


def test_stable_ids_named_people_keep_their_faces() -> None:
    previous = {1: 10, 2: 10, 3: 10, 4: 11, 5: 11}
    # DBSCAN merges everything and calls one of the named person's faces noise.
    r = stable_ids([1, 2, 3, 4, 5, 6], [0, 0, 0, 0, -1, 0], previous, {11}, set(),
                   counter(100))
    assert r.assignment[4] == 11 and r.assignment[5] == 11
    assert r.assignment[6] == 10  # the new face follows the cluster's person
    assert r.retired == set()


def test_stable_ids_named_person_can_win_new_faces() -> None:
    previous = {1: 11, 2: 11}
    r = stable_ids([1, 2, 3], [4, 4, 4], previous, {11}, set(), counter(100))
    assert r.assignment == {1: 11, 2: 11, 3: 11}


def test_stable_ids_honour_exclusions() -> None:
    previous = {1: 10, 2: 10, 3: 10}
    excluded = {(3, 10), (4, 10)}
    r = stable_ids([1, 2, 3, 4], [0, 0, 0, 0], previous, {10}, excluded, counter(100))
    assert r.assignment == {1: 10, 2: 10, 3: None, 4: None}


def test_stable_ids_noise_is_sticky_while_the_person_lives() -> None:
    previous = {1: 10, 2: 10, 3: 10, 7: 20, 8: 20}
    r = stable_ids([1, 2, 3, 7, 8], [0, 0, -1, -1, -1], previous, set(), set(), counter(100))
    assert r.assignment == {1: 10, 2: 10, 3: 10, 7: None, 8: None}
    assert r.retired == {20}


def test_stable_ids_a_face_given_at_once_is_not_sticky() -> None:
    # Face 3 joined person 10 between two clusterings; the full clustering now calls it
    # noise: its word is final (a hasty decision must not outlive it). Face 4 was
    # clustered into 10 before and stays, as noise does.
    previous = {1: 10, 2: 10, 3: 10, 4: 10}
    r = stable_ids([1, 2, 3, 4], [0, 0, -1, -1], previous, set(), set(), counter(100),
                   provisional={3})
    assert r.assignment == {1: 10, 2: 10, 3: None, 4: 10}
    # Given at once and clustered with the person: it stays, and counts for the match.
    r = stable_ids([1, 2, 3], [0, 0, 0], previous, set(), set(), counter(100),
                   provisional={3})
    assert r.assignment == {1: 10, 2: 10, 3: 10}


def test_stable_ids_rejects_mismatched_input() -> None:
    with pytest.raises(ValueError, match="labels"):
        stable_ids([1, 2], [0], {}, set(), set(), counter(1))


# -- incremental assignment ----------------------------------------------------------------


def test_assign_new_votes_with_the_nearest_faces() -> None:
    x, truth = blobs(3, 10, 0.05, seed=5)
    persons: list[int | None] = [int(t) + 40 for t in truth]
    persons[20:30] = [None] * 10  # the third person is still unclustered
    index = FaceIndex(x, persons)
    params = ClusterParams(eps=0.5, min_samples=3)
    near0 = unit(x[:1] + 0.01)
    near2 = unit(x[25:26] + 0.01)
    far = unit(-x[:1])
    assert assign_new(index, np.r_[near0, near2, far], params) == [40, None, None]


def test_assign_new_refuses_a_split_vote() -> None:
    a = unit(np.eye(DIM)[0] + 0.0)
    b = unit(np.eye(DIM)[0] + 0.4 * np.eye(DIM)[1])
    x = np.stack([a, a, b, b])
    index = FaceIndex(x, [1, 1, 2, 2])
    q = unit((a + b)[None] / 2)
    assert assign_new(index, q, ClusterParams(eps=0.5, min_samples=2)) == [None]
    # Once a face of person 1 sits next to the query, the vote is clear enough... only
    # if the share rule allows it: with vote_share 0.5 the 3-vs-2 majority wins.
    index.add(q, [1])
    loose = ClusterParams(eps=0.5, min_samples=2, vote_share=0.5)
    assert assign_new(index, q, loose) == [1]
    assert assign_new(index, q, replace(loose, vote_share=0.8)) == [None]


# -- cluster_faces end to end --------------------------------------------------------------


def test_well_separated_people_are_recovered_and_strangers_stay_noise() -> None:
    x, truth = blobs(20, 6, 0.04, seed=6)
    rng = np.random.default_rng(7)
    strangers = unit(rng.normal(size=(40, DIM)))  # random directions: far from everyone
    labels = cluster_faces(np.r_[x, strangers], ClusterParams(eps=0.5, min_samples=2))
    assert labels.dtype == np.int64
    assert same_partition(labels[: len(x)], truth)
    assert (labels[len(x):] == -1).all()


def test_defaults_exist_for_every_engine_and_refuse_unknown_ones() -> None:
    for engine in ("yunet-2023mar+dlib-resnet-v1", "dlib-hog+dlib-resnet-v1",
                   "yunet-2023mar+sface-2021dec"):
        p = default_params(engine)
        assert 0 < p.eps < 2 and p.min_samples >= 1
    assert default_params("yunet-2023mar+sface-2021dec").eps > default_params(
        "yunet-2023mar+dlib-resnet-v1").eps
    with pytest.raises(ValueError, match="no clustering defaults"):
        default_params("mystery-engine")
    for engine in ("yunet-2023mar+dlib-resnet-v1", "yunet-2023mar+sface-2021dec"):
        p = default_params(engine)  # the cuts sit just inside eps, in this order
        assert 0 < p.rejoin_eps < p.split_eps <= p.eps


def test_a_stricter_eps_takes_the_split_and_rejoin_cuts_along() -> None:
    base = default_params("yunet-2023mar+dlib-resnet-v1")
    strict = with_eps(base, base.eps * 0.8)
    assert strict.eps == pytest.approx(base.eps * 0.8)
    assert strict.split_eps == pytest.approx(base.split_eps * 0.8)
    assert strict.rejoin_eps == pytest.approx(base.rejoin_eps * 0.8)
    assert strict.min_samples == base.min_samples


def test_cluster_faces_handles_empty_and_tiny_input() -> None:
    params = ClusterParams(eps=0.5, min_samples=2)
    assert cluster_faces(np.zeros((0, DIM), np.float32), params).shape == (0,)
    one, _ = blobs(1, 1, 0.0)
    assert cluster_faces(one, params).tolist() == [-1]


def chain_between_two_people(n_bridge: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Two tight people 1.0 apart and a line of bridging faces 1/(n+1) apart between them."""
    rng = np.random.default_rng(8)
    a, b = np.eye(DIM)[0], unit(np.eye(DIM)[0] + 1.2 * np.eye(DIM)[1])
    people = np.r_[a + rng.normal(scale=0.002, size=(15, DIM)),
                   b + rng.normal(scale=0.002, size=(15, DIM))]
    t = np.linspace(0, 1, n_bridge + 2)[1:-1, None]
    bridge = (1 - t) * a + t * b
    truth = np.r_[np.zeros(15), np.ones(15), np.full(n_bridge, -1)].astype(np.int64)
    return unit(np.r_[people, bridge]), truth


def test_plain_dbscan_chains_through_bridges_but_the_guard_does_not() -> None:
    x, truth = chain_between_two_people()
    step = np.linalg.norm(x[30] - x[31])
    params = ClusterParams(eps=1.5 * step, min_samples=2)
    plain = cluster_faces(x, replace(params, guard="none"))
    assert plain[0] == plain[15] != -1  # the failure the guard exists for
    guarded = cluster_faces(x, params)
    a, b = guarded[truth == 0], guarded[truth == 1]
    assert len(set(a.tolist())) == 1 and len(set(b.tolist())) == 1
    assert a[0] != -1 and b[0] != -1 and a[0] != b[0]


def test_guard_leaves_a_compact_person_alone_and_splits_a_large_chained_cluster() -> None:
    x, truth = chain_between_two_people(n_bridge=40)
    step = np.linalg.norm(x[30] - x[31])
    # A tiny split_limit forces the sampled path used for very large clusters.
    params = ClusterParams(eps=1.5 * step, min_samples=2, split_limit=20)
    labels = cluster_faces(x, params)
    assert labels[0] != labels[15]
    compact, _ = blobs(1, 50, 0.002, seed=9)
    assert set(cluster_faces(compact, params).tolist()) == {0}


def test_cell_join_finds_the_close_pairs_of_the_exact_search() -> None:
    x, truth = blobs(60, 8, 0.03, seed=10)
    exact = eps_graph(x, 0.5, max_neighbours=20)
    approx = eps_graph(x, 0.5, max_neighbours=20, params=IndexParams(exact_limit=0, nprobe=4))
    found = _structure(approx) & _structure(exact)
    assert found.sum() >= 0.95 * exact.nnz
    assert not (_structure(approx) & ~_structure(exact)).any()  # nothing beyond eps
    labels = cluster_faces(x, ClusterParams(eps=0.5, min_samples=2,
                                            index=IndexParams(exact_limit=0, nprobe=4)))
    assert same_partition(labels, truth)


def test_face_index_beyond_the_exact_limit_still_votes() -> None:
    x, truth = blobs(40, 10, 0.03, seed=11)
    index = FaceIndex(x, truth.tolist(), IndexParams(exact_limit=0, nprobe=4))
    q = unit(x[::10] + 0.005)
    assert assign_new(index, q, ClusterParams(eps=0.5, min_samples=2)) == truth[::10].tolist()


def test_restrict_is_the_subgraph_with_short_edges_and_keeps_zero_length_ones() -> None:
    x, _ = blobs(30, 6, 0.05, seed=13)
    x[7] = x[3]  # a duplicate face: an edge of length 0
    graph = eps_graph(x, 0.6, 10)
    idx = np.sort(np.random.default_rng(14).choice(len(x), 100, replace=False))
    idx = np.union1d(idx, [3, 7])
    got = _restrict(graph, idx, 0.4)
    dense = graph[idx][:, idx].toarray()
    present = _structure(graph[idx][:, idx]) & (dense <= 0.4)
    assert np.array_equal(_structure(got), present)
    assert np.allclose(got.toarray()[present], dense[present])
    i, j = np.searchsorted(idx, 3), np.searchsorted(idx, 7)
    assert got[i, j] == 0 and _structure(got)[i, j]
    some = np.array([i, 0, 5])
    assert np.array_equal(_restrict(graph, idx, 0.4, rows=some).toarray(), got[some].toarray())
    # Row blocks change nothing.
    assert np.array_equal(_restrict(graph, idx, 0.4, block=7).toarray(), got.toarray())


def test_peel_breaks_a_chained_giant_component_along_its_weakest_links() -> None:
    # Four tight people, each pair of neighbours joined by a thin chain of look-alikes:
    # at eps one component, too large for exact average linkage under this limit.
    rng = np.random.default_rng(12)
    centres = [unit(np.eye(DIM)[i] + np.eye(DIM)[i + 1]) for i in range(4)]
    people = [c + rng.normal(scale=0.004, size=(40, DIM)) for c in centres]
    chains = [
        (1 - t) * centres[i] + t * centres[i + 1]
        for i in range(3)
        for t in np.linspace(0, 1, 40)[1:-1, None]
    ]
    x = unit(np.r_[np.concatenate(people), np.array(chains).reshape(-1, DIM)])
    truth = np.r_[np.repeat(np.arange(4), 40), np.full(len(x) - 160, -1)]
    chain = x[160:].reshape(3, -1, DIM)
    step = float(np.linalg.norm(np.diff(chain, axis=1), axis=2).max())
    params = ClusterParams(eps=1.2 * step, min_samples=2, split_limit=60)
    graph = eps_graph(x, params.eps, params.max_neighbours)
    assert dbscan_graph(graph, 2).max() == 0  # plain DBSCAN: one giant component

    parts = peel(graph, np.arange(len(x)), params.eps, params.split_limit, params.min_samples)
    assert all(len(p) <= params.split_limit for p in parts)
    for person in range(4):
        homes = [i for i, p in enumerate(parts) if (truth[p] == person).any()]
        assert len(homes) == 1, f"person {person} cut into {len(homes)} parts"
        assert set(truth[parts[homes[0]]].tolist()) <= {person, -1}

    # Each person is about 0.05 across; average linkage at 0.2 keeps each one whole.
    labels = cluster_faces(x, replace(params, split_eps=0.2))
    # Peeling reads the component at a higher density, so a few outlying faces may fall
    # to noise; no person is split and no two people share a label.
    main_label = []
    for person in range(4):
        got = labels[truth == person]
        values, counts = np.unique(got[got != -1], return_counts=True)
        assert len(values) == 1 and counts[0] >= 0.9 * len(got), (person, values, counts)
        main_label.append(int(values[0]))
    assert len(set(main_label)) == 4


def test_label_pairs_gives_every_stored_edge_in_any_block_size() -> None:
    import scipy.sparse as sp

    from daemon.cluster.edges import label_pairs

    rng = np.random.default_rng(3)
    dense = np.triu(rng.random((40, 40)) < 0.15, 1)
    dense = dense | dense.T
    graph = sp.csr_matrix(dense.astype(np.float32))
    labels = rng.integers(-1, 5, 40)
    want = sorted((int(labels[i]), int(labels[j])) for i, j in zip(*np.nonzero(dense), strict=True))
    for block in (1, 7, 40, 1000):
        got = sorted((int(x), int(y)) for a, b in label_pairs(graph, labels, block)
                     for x, y in zip(a, b, strict=True))
        assert got == want


def _graph(n: int, edges: dict[tuple[int, int], float]):
    import scipy.sparse as sp

    rows = [i for i, j in edges] + [j for i, j in edges]
    cols = [j for i, j in edges] + [i for i, j in edges]
    data = list(edges.values()) * 2
    return sp.csr_matrix((np.array(data, np.float32), (rows, cols)), shape=(n, n))


# Faces 0-2 are one cluster, 0.1 apart; face 3 (noise) is 0.3 from faces 0 and 1; faces
# 4-5 are a second cluster, 0.1 apart, and face 6 (noise) is 0.3 from faces 1 and 4.
STRAY_EDGES = {(0, 1): 0.1, (0, 2): 0.1, (1, 2): 0.1, (0, 3): 0.3, (1, 3): 0.3,
               (4, 5): 0.1, (1, 6): 0.3, (4, 6): 0.3}
STRAY_LABELS = np.array([0, 0, 0, -1, 1, 1, -1])


def test_a_stray_joins_the_cluster_whose_faces_list_it_back() -> None:
    from daemon.cluster.strays import join_strays

    graph = _graph(7, STRAY_EDGES)
    out = join_strays(graph, STRAY_LABELS, k=3, share=0.6)
    # Face 3's nearest are all cluster 0 and face 0 lists it third; face 6's vote is split.
    assert out.tolist() == [0, 0, 0, 0, 1, 1, -1]


def test_a_stray_its_neighbours_do_not_list_back_stays_out() -> None:
    from daemon.cluster.strays import join_strays

    # With lists of 2, faces 0 and 1 list each other and face 2, never face 3.
    out = join_strays(_graph(7, STRAY_EDGES), STRAY_LABELS, k=2, share=0.6)
    assert out.tolist() == STRAY_LABELS.tolist()


def test_a_stray_never_joins_a_cluster_holding_a_face_of_its_photo() -> None:
    from daemon.cluster.strays import join_strays

    photos = np.array([10, 11, 12, 12, 13, 14, 15])
    out = join_strays(_graph(7, STRAY_EDGES), STRAY_LABELS, k=3, share=0.6, photos=photos)
    assert out[3] == -1
    photos[2] = 16  # the clash gone, the same stray joins
    assert join_strays(_graph(7, STRAY_EDGES), STRAY_LABELS, k=3, share=0.6,
                       photos=photos)[3] == 0
