"""Deciding the faces the vote leaves open from their neighbourhood (daemon.cluster.local)."""

from __future__ import annotations

import numpy as np
from synthetic import DIM, unit

from daemon.cluster import NOISE, assign_new, decide_locally, default_params
from daemon.cluster.stable import FaceIndex

PARAMS = default_params("yunet-2023mar+dlib-resnet-v1")  # eps 0.37
RNG = np.random.default_rng(3)


def at(centre: np.ndarray, distance: float, towards: np.ndarray | None = None) -> np.ndarray:
    """A unit vector ``distance`` (chord) away from ``centre``, towards ``towards``."""
    w = RNG.normal(size=DIM) if towards is None else towards - centre
    w = w - (w @ centre) * centre
    w /= np.linalg.norm(w)
    theta = 2 * np.arcsin(distance / 2)
    return unit(centre * np.cos(theta) + w * np.sin(theta))


def person(centre: np.ndarray, n: int) -> list[np.ndarray]:
    return [at(centre, 0.05) for _ in range(n)]


def test_a_face_the_vote_leaves_open_joins_the_person_its_neighbourhood_belongs_to() -> None:
    p = unit(RNG.normal(size=DIM))
    known = person(p, 3)
    stray = at(p, 0.30)  # nobody was given it (say, it came in a burst)
    new = at(p, 0.32, towards=stray)
    assert np.linalg.norm(new - stray) < PARAMS.eps
    # The vote abstains: within eps lie three faces of p and the unassigned one (75 %).
    index = FaceIndex(np.array([*known, stray]), [7, 7, 7, None])
    assert assign_new(index, new[None], PARAMS) == [None]
    decision = decide_locally(np.array([new, *known, stray]),
                              np.array([NOISE, 7, 7, 7, NOISE]),
                              np.array([True, False, False, False, False]), PARAMS)
    assert decision.joins == {0: 7} and decision.new_people == []


def test_a_face_close_only_to_faces_nobody_was_given_makes_a_new_person() -> None:
    p, q = unit(RNG.normal(size=DIM)), unit(RNG.normal(size=DIM))
    known = person(p, 3)
    earlier = at(q, 0.05)  # a stranger's first photo: left unassigned
    new = at(q, 0.05)
    decision = decide_locally(np.array([new, *known, earlier]),
                              np.array([NOISE, 4, 4, 4, NOISE]),
                              np.array([True, False, False, False, False]), PARAMS)
    assert decision.joins == {} and decision.new_people == [[0, 4]]
    # Two faces of one photo are two people, however alike.
    same_photo = decide_locally(np.array([new, *known, earlier]),
                                np.array([NOISE, 4, 4, 4, NOISE]),
                                np.array([True, False, False, False, False]), PARAMS,
                                photos=np.array([9, 1, 2, 3, 9]))
    assert same_photo.joins == {} and same_photo.new_people == []


def test_a_neighbourhood_of_two_people_or_of_nobody_decides_nothing() -> None:
    p = unit(RNG.normal(size=DIM))
    q = at(p, 0.25)  # two look-alike people the full clustering kept apart
    faces = [*person(p, 2), *person(q, 2)]
    new = at(p, 0.12, towards=q)
    mixed = decide_locally(np.array([new, *faces]), np.array([NOISE, 1, 1, 2, 2]),
                           np.array([True, False, False, False, False]), PARAMS)
    assert mixed.joins == {} and mixed.new_people == []
    alone = decide_locally(np.array([unit(RNG.normal(size=DIM)), *faces]),
                           np.array([NOISE, 1, 1, 2, 2]),
                           np.array([True, False, False, False, False]), PARAMS)
    assert alone.joins == {} and alone.new_people == []


def test_a_loose_group_of_faces_nobody_was_given_waits_for_the_full_clustering() -> None:
    # Within eps of each other, but looser than the blob re-cut keeps together (say, two
    # look-alike toddlers of different families): no new person at once.
    q = unit(RNG.normal(size=DIM))
    earlier, new = at(q, 0.17), at(q, 0.17)
    new = at(earlier, 0.33)
    assert PARAMS.blob_cut < np.linalg.norm(new - earlier) < PARAMS.eps
    decision = decide_locally(np.array([new, earlier]), np.array([NOISE, NOISE]),
                              np.array([True, False]), PARAMS)
    assert decision.joins == {} and decision.new_people == []


def test_a_neighbourhood_is_clustered_without_cohesion_or_the_second_pass(monkeypatch) -> None:
    # A neighbourhood has no outside: every cluster in it would look cohesive.
    import daemon.cluster.local as local

    seen = []
    monkeypatch.setattr(local, "cluster_faces",
                        lambda v, p, *a: seen.append(p) or np.full(len(v), -1))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 128)).astype(np.float32)
    params = default_params("yunet-2023mar+dlib-resnet-v1")
    assert params.blob_whole > 0 and params.merge_eps > 0
    local.decide_locally(x, np.full(4, -1), np.ones(4, bool), params)
    assert seen[0].blob_whole == 0.0 and seen[0].merge_eps == 0.0
