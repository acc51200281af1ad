"""Family photos: two faces of one photo are two people, no blob albums, poor faces wait.

Synthetic embeddings made here (no data needed), plus one real scan on the shared photos.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist

from daemon.cluster import (
    FaceIndex,
    assign_new,
    cluster_faces,
    default_params,
    nearest_people,
    pairwise_scores,
    same_photo_pairs,
    stable_ids,
)
from daemon.cluster.blobs import split_blobs, spread
from daemon.cluster.constraints import constrained_average_linkage, enforce
from daemon.cluster.rejoin import rejoin
from daemon.config import from_dict
from daemon.indexer.types import Face, IndexedPhoto
from daemon.stages.pipeline import Pipeline

DLIB = "yunet-2023mar+dlib-resnet-v1"
PARAMS = default_params(DLIB)


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def _around(centre: np.ndarray, n: int, rng, scale: float) -> np.ndarray:
    return _unit(centre + rng.normal(scale=scale, size=(n, len(centre))))


def _siblings(rng, gap: float = 0.22, scale: float = 0.012):
    """Two look-alike people (centres ``gap`` apart): 6 photos of both together, and 4
    photos each alone. Returns vectors, photo ids and true person per face."""
    a = _unit(rng.normal(size=128))
    b = _unit(a + _unit(rng.normal(size=128)) * gap)
    va, vb = _around(a, 14, rng, scale), _around(b, 14, rng, scale)
    vectors = np.r_[va[:6], vb[:6], va[6:10], vb[6:10]]
    photos = np.r_[np.arange(6), np.arange(6), 100 + np.arange(4), 200 + np.arange(4)]
    truth = np.r_[np.zeros(6), np.ones(6), np.zeros(4), np.ones(4)].astype(int)
    return vectors, photos, truth


def test_constrained_linkage_without_photos_is_scipys_average_linkage() -> None:
    rng = np.random.default_rng(3)
    x = _unit(rng.normal(size=(300, 8)))
    ours = constrained_average_linkage(x, 0.9)
    theirs = fcluster(linkage(pdist(x.astype(np.float64)), "average"), 0.9, "distance")
    s = pairwise_scores(theirs, ours)
    assert (s.precision, s.recall) == (1.0, 1.0)
    assert len(set(ours.tolist())) == len(set(theirs.tolist())) > 1


def test_constrained_linkage_never_joins_faces_of_one_photo() -> None:
    rng = np.random.default_rng(4)
    x = _around(_unit(rng.normal(size=16)), 12, rng, 0.01)  # one tight group
    photos = np.array([0, 0, 1, 1, 2, 2, 3, 4, 5, 6, 7, 8])
    labels = constrained_average_linkage(x, 0.5, photos)
    assert same_photo_pairs(labels, photos) == 0
    assert len(set(labels.tolist())) == 2  # everything else is free to merge


def test_siblings_seen_together_are_kept_apart_and_their_solo_photos_follow() -> None:
    vectors, photos, truth = _siblings(np.random.default_rng(5))
    plain = cluster_faces(vectors, PARAMS)
    assert len(set(plain.tolist()) - {-1}) == 1  # without the photos: one album of both
    labels = cluster_faces(vectors, PARAMS, photos=photos)
    assert same_photo_pairs(labels, photos) == 0
    assert (labels != -1).all()
    assert pairwise_scores(truth, labels).precision == 1.0  # solo photos went to the right one


def test_rejoin_never_merges_clusters_sharing_a_photo() -> None:
    rng = np.random.default_rng(6)
    x = _around(_unit(rng.normal(size=32)), 6, rng, 0.01)
    labels = np.array([0, 0, 0, 1, 1, 1])
    import scipy.sparse as sp

    graph = sp.csr_matrix((6, 6), dtype=np.float32)
    assert len(set(rejoin(x, labels, graph, 0.3).tolist())) == 1
    photos = np.array([10, 11, 12, 10, 13, 14])
    kept = rejoin(x, labels, graph, 0.3, photos=photos)
    assert kept[0] != kept[3] and same_photo_pairs(kept, photos) == 0


def test_enforce_keeps_the_face_nearest_the_centre() -> None:
    x = _unit(np.array([[1.0, 0, 0], [1.0, 0.05, 0], [1.0, 0.3, 0], [1.0, 0.02, 0.01]]))
    labels = np.array([0, 0, 0, 0])
    photos = np.array([1, 2, 2, 3])
    out = enforce(labels, photos, x)
    assert out.tolist() == [0, 0, -1, 0]


def _blob(rng, people: int = 24, faces: int = 4, scale: float = 0.018):
    """Many people whose centres are squeezed together (like babies in dlib's space)."""
    centre = _unit(rng.normal(size=128))
    centres = _unit(centre + rng.normal(scale=scale, size=(people, 128)))
    vectors = np.concatenate([_around(c, faces, rng, 0.013) for c in centres])
    return vectors, np.repeat(np.arange(people), faces)


def test_a_crowd_of_look_alikes_is_split_or_left_out() -> None:
    # A crowd: one average-linkage cluster of hundreds of faces whose close pairs all
    # stay inside it (high cohesion), but wider than one person spreads.
    vectors, truth = _blob(np.random.default_rng(8), people=150, scale=0.02)
    no_guard = replace(PARAMS, blob_size=0, blob_large=0, blob_agree=0.0)
    merged = cluster_faces(vectors, no_guard)
    sizes = np.bincount(merged[merged >= 0])
    assert sizes.max() >= 200  # the crowd really forms one cluster without the guard
    labels = cluster_faces(vectors, PARAMS)
    assert np.bincount(labels[labels >= 0]).max() <= 16
    assert pairwise_scores(truth, labels).precision > 0.5 > pairwise_scores(truth,
                                                                            merged).precision


def test_cohesion_spares_a_wide_cluster_only_from_the_spread_test() -> None:
    # Three look-alikes (4 faces each) in one cluster that the spread test flags.
    rng = np.random.default_rng(8)
    a = _unit(rng.normal(size=128))
    x = np.concatenate([_around(_unit(a + _unit(rng.normal(size=128)) * 0.2), 4, rng, 0.012)
                        for _ in range(3)])
    labels = np.zeros(12, np.int64)
    _, rms = spread(x, labels)
    common = dict(size=8, max_spread=0.2, cut=0.28, min_size=2)
    assert 0.2 < rms[0] < 0.35
    cut = split_blobs(x, labels, None, **common)
    assert cut[0] != cut[4]  # a blob by its spread
    cohesive = np.array([0.9])
    kept = split_blobs(x, labels, None, **common, cohesion=cohesive, whole=0.5,
                       whole_spread=0.35)
    assert kept.tolist() == [0] * 12  # its close pairs stay inside: one person
    too_wide = split_blobs(x, labels, None, **common, cohesion=cohesive, whole=0.5,
                           whole_spread=0.2)
    assert too_wide[0] != too_wide[4]  # wider than a person gets: a crowd
    low = split_blobs(x, labels, None, **common, cohesion=np.array([0.4]), whole=0.5,
                      whole_spread=0.35)
    assert low[0] != low[4]  # close pairs leave it: a blob in a crowd
    disagree = split_blobs(x, labels, None, size=0, max_spread=0, cut=0.28, min_size=2,
                           agreement=np.array([0.1]), min_agree=0.3, agree_spread=0.2,
                           cohesion=cohesive, whole=0.5, whole_spread=0.35)
    assert disagree[0] != disagree[4]  # the agreement test is not overruled


def _varied_person(rng):
    """One person with 150 photos in 15 looks (years, glasses, light), and 40 strangers
    with 5 photos each elsewhere. Returns vectors and the true person per face."""
    me = _unit(rng.normal(size=128))
    looks = _unit(me + rng.normal(scale=0.018, size=(15, 128)))
    mine = np.concatenate([_around(c, 10, rng, 0.011) for c in looks])
    others = np.concatenate([_around(_unit(rng.normal(size=128)), 5, rng, 0.013)
                             for _ in range(40)])
    return np.r_[mine, others], np.r_[np.zeros(150, int), np.repeat(np.arange(1, 41), 5)]


def test_a_big_varied_person_stays_whole() -> None:
    vectors, truth = _varied_person(np.random.default_rng(1))
    mine = truth == 0
    n, rms = spread(vectors, np.where(mine, 0, -1))
    assert n[0] == 150 and rms[0] > PARAMS.blob_large_spread  # as wide as a blob
    # The spread test alone (the rule before cohesion) cuts them into their 15 looks.
    old = cluster_faces(vectors, replace(PARAMS, blob_whole=0.0, merge_eps=0.0))
    assert np.bincount(old[mine][old[mine] >= 0]).max() < 0.5 * 150
    labels = cluster_faces(vectors, PARAMS)
    assert np.bincount(labels[mine][labels[mine] >= 0]).max() >= 0.9 * 150
    assert pairwise_scores(truth, labels).precision == 1.0


def test_blob_spread_is_the_rms_distance() -> None:
    rng = np.random.default_rng(9)
    x = _unit(rng.normal(size=(7, 16)))
    n, rms = spread(x, np.zeros(7, np.int64))
    assert n[0] == 7
    assert rms[0] == pytest.approx(np.sqrt((pdist(x.astype(np.float64)) ** 2).mean()), 1e-5)
    assert split_blobs(x, np.zeros(7, np.int64), None, size=0, max_spread=0, cut=0,
                       min_size=2).tolist() == [0] * 7


def test_a_poor_face_never_bridges_two_people_and_joins_only_by_a_clear_vote() -> None:
    rng = np.random.default_rng(10)
    a = _unit(rng.normal(size=128))
    b = _unit(a + _unit(rng.normal(size=128)) * 0.8)
    va, vb = _around(a, 5, rng, 0.01), _around(b, 5, rng, 0.01)
    bridge = _unit((a + b)[None, :] + rng.normal(scale=0.001, size=(3, 128)))
    near_a = _around(a, 1, rng, 0.01)
    x = np.r_[va, vb, bridge, near_a]
    scores = np.r_[np.full(10, 0.95), np.full(3, 0.82), [0.82]]
    params = replace(PARAMS, eps=0.5, split_eps=0.49, rejoin_eps=0.0, guard="none")
    glued = cluster_faces(x, params)
    assert glued[0] == glued[5]  # the bridge glues them by single linkage
    labels = cluster_faces(x, params, scores=scores)
    assert labels[0] != labels[5]
    assert (labels[10:13] == -1).all()  # poor faces halfway: no clear vote
    assert labels[13] == labels[0]  # a poor face right by one person joins it


def test_poor_face_and_blob_rules_apply_only_where_measured() -> None:
    assert default_params("yunet-2023mar+dlib-resnet-v1").weak_score == pytest.approx(0.90)
    assert default_params("dlib-hog+dlib-resnet-v1").weak_score == 0.0  # HOG: other scale
    sface = default_params("yunet-2023mar+sface-2021dec")
    assert sface.blob_size == 0 and sface.blob_large == 0


def test_assign_new_never_gives_a_person_two_faces_of_one_photo() -> None:
    rng = np.random.default_rng(11)
    a = _unit(rng.normal(size=128))
    known = _around(a, 5, rng, 0.01)
    index = FaceIndex(known, [7] * 5, photo_ids=[1, 2, 3, 4, 5])
    new = _around(a, 3, rng, 0.01)
    assert assign_new(index, new, PARAMS) == [7, 7, 7]  # without photos: all join
    votes = assign_new(index, new, PARAMS, photo_ids=[3, 9, 9])
    assert votes == [None, 7, None]  # photo 3 has person 7; photo 9 gets it once
    index.add(new[1:2], [7], [9])
    assert index.people_in(9) == {7}


def test_stable_ids_unassign_a_sticky_face_that_would_share_a_photo() -> None:
    # Faces 1, 2 were person 5; now 2 is noise and face 3 of the same photo as 2 is
    # clustered with 1: sticky noise must not give 5 both faces of that photo.
    counter = iter(range(100, 200))
    result = stable_ids([1, 2, 3], [0, -1, 0], {1: 5, 2: 5}, set(), set(),
                        lambda: next(counter), photos={1: 10, 2: 20, 3: 20})
    assert result.assignment == {1: 5, 2: None, 3: 5}
    plain = stable_ids([1, 2, 3], [0, -1, 0], {1: 5, 2: 5}, set(), set(),
                       lambda: next(counter))
    assert plain.assignment[2] == 5


def test_nearest_people_lists_close_centres_only() -> None:
    rng = np.random.default_rng(12)
    a = _unit(rng.normal(size=128))
    a2 = _unit(a + _unit(rng.normal(size=128)) * 0.25)
    far = _unit(rng.normal(size=128))
    x = np.r_[_around(a, 3, rng, 0.01), _around(a2, 3, rng, 0.01), _around(far, 3, rng, 0.01),
              _around(far, 1, rng, 0.01)]
    persons = [1, 1, 1, 2, 2, 2, 3, 3, 3, None]
    near = nearest_people(persons, x)
    assert [n.person_id for n in near[1]] == [2]
    assert [n.person_id for n in near[2]] == [1]
    assert near[3] == []
    assert near[1][0].distance == pytest.approx(near[2][0].distance)


# -- through the product: recluster (what scan runs) and the service's incremental path --

@pytest.fixture()
def pipeline(tmp_path: Path):
    (tmp_path / "photos").mkdir()
    cfg = from_dict({"watch": ["photos"], "workers": 1}, tmp_path)
    with Pipeline(cfg, create=True) as p:
        yield p


def _add(p: Pipeline, name: str, vectors: np.ndarray) -> list[int]:
    path = p.cfg.watch[0] / name
    path.write_bytes(name.encode())
    faces = tuple(Face((10.0 + 100 * i, 10.0, 80.0, 80.0), (), 0.99, v)
                  for i, v in enumerate(vectors))
    return p.store.save_indexed(path, 1, 1, name, IndexedPhoto(path, 400, 100, p.engine_id,
                                                               faces))


def _persons(p: Pipeline) -> dict[int, tuple[int, int | None]]:
    return {f.id: (f.photo_id, f.person_id) for f in p.store.faces()}


def _shared(p: Pipeline) -> int:
    seen: dict[tuple[int, int], int] = {}
    for photo, person in _persons(p).values():
        if person is not None:
            seen[(photo, person)] = seen.get((photo, person), 0) + 1
    return sum(c - 1 for c in seen.values())


def test_recluster_never_puts_two_faces_of_one_photo_in_one_person(pipeline) -> None:
    vectors, photos, _ = _siblings(np.random.default_rng(13))
    for ph in np.unique(photos):
        _add(pipeline, f"p{ph}.jpg", vectors[photos == ph])
    pipeline.recluster()
    assert _shared(pipeline) == 0
    assert len({p for _, p in _persons(pipeline).values() if p is not None}) == 2
    rows = {r.key: r for r in pipeline.people()}
    assert all(len(r.may_be) == 1 for r in rows.values())  # the siblings point at each other


def test_look_alikes_are_computed_once_per_full_reclustering(pipeline, monkeypatch) -> None:
    from daemon.stages import reflect

    calls = []
    real = reflect.cluster.nearest_people
    monkeypatch.setattr(reflect.cluster, "nearest_people",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    vectors, photos, _ = _siblings(np.random.default_rng(13))
    for ph in np.unique(photos):
        _add(pipeline, f"p{ph}.jpg", vectors[photos == ph])
    pipeline.recluster()
    first = {r.key: r.may_be for r in pipeline.people()}
    pipeline.write_albums()
    assert {r.key: r.may_be for r in pipeline.people()} == first and len(calls) == 1
    pipeline.recluster()
    pipeline.people()
    assert len(calls) == 2


def test_incremental_path_never_puts_two_faces_of_one_photo_in_one_person(pipeline) -> None:
    rng = np.random.default_rng(14)
    a = _unit(rng.normal(size=128))
    for i in range(4):
        _add(pipeline, f"a{i}.jpg", _around(a, 1, rng, 0.01))
    pipeline.recluster()
    twin_shot = _add(pipeline, "mirror.jpg", _around(a, 2, rng, 0.01))
    assert pipeline.assign_incremental(twin_shot) == 1
    assert _shared(pipeline) == 0
    later = _add(pipeline, "a-later.jpg", _around(a, 1, rng, 0.01))
    assert pipeline.assign_incremental(later) == 1  # other photos still join


@pytest.mark.slow
def test_scan_keeps_a_mirrored_face_out_of_its_own_person(tmp_path, shared_photos,
                                                           models_dir) -> None:
    import cv2

    photos = tmp_path / "photos"
    photos.mkdir()
    obama = shared_photos / "known" / "obama"
    for name in ("obama.jpg", "obama2.jpg", "obama-480p.jpg"):
        (photos / name).write_bytes((obama / name).read_bytes())
    one = cv2.imread(str(obama / "obama.jpg"))
    cv2.imwrite(str(photos / "mirror.jpg"), np.hstack([one, one[:, ::-1]]))
    cfg = from_dict({"watch": ["photos"], "workers": 1,
                     "engine": {"detector": "yunet", "embedder": "dlib",
                                "models_dir": str(models_dir)}}, tmp_path)
    with Pipeline(cfg, create=True) as p:
        p.scan()
        mirror = [f for f in p.store.faces() if f.path.name == "mirror.jpg"]
        assert len(mirror) == 2
        placed = [f.person_id for f in mirror if f.person_id is not None]
        assert len(placed) == len(set(placed)) >= 1
        assert _shared(p) == 0
