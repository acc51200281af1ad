"""The answers as constraints: closure (union-find) and the post-pass on cluster labels."""

from __future__ import annotations

import numpy as np
import pytest

from daemon.cluster import cluster_faces, default_params
from daemon.cluster.links import Links, apply_links, closure
from daemon.people.labels import parse_labels
from daemon.review.answers import answer_closure, canonical_people, face_links
from tests.synthetic import blobs, unit


def test_closure_propagates_same_and_different() -> None:
    c = closure([("A", "B"), ("B", "D")], [("B", "C"), ("E", "F")])
    assert c.same("A", "D") and c.group("A") == c.group("D") == "A"
    assert c.different("A", "C") and c.different("D", "C")  # A = B, B != C => A != C
    assert c.different("F", "E")
    assert not c.settled("A", "E") and not c.settled("C", "F")
    assert c.settled("D", "B") and c.settled("C", "D")


def test_closure_leaves_out_a_contradiction_and_reports_it() -> None:
    c = closure([("A", "B"), ("B", "C")], [("A", "C"), ("A", "X")])
    assert c.contradictions == (("A", "C"),)
    assert c.same("A", "C") and not c.different("A", "C")
    assert c.different("C", "X")


def test_closure_prefer_chooses_who_stands_for_the_group() -> None:
    c = closure([("p1", "p2"), ("p2", "p3")], [], prefer=lambda e: {"p2": 0}.get(e, 1))
    assert {c.group(e) for e in ("p1", "p2", "p3")} == {"p2"}


def test_apply_links_merges_the_majority_clusters_and_pins_faces() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, -1])
    v = unit(np.random.default_rng(0).normal(size=(9, 8)))
    # group 0: the faces of cluster 0 and 1 (one person cut in two), and face row 8.
    links = Links(members=(np.array([0, 1, 2, 3, 4, 8]),), pinned=(np.array([8]),))
    out = apply_links(labels, v, links)
    assert len(set(out[[0, 1, 2, 3, 4, 8]])) == 1 and out[0] != -1
    assert out[5] == out[6] == out[7] != out[0]


def test_apply_links_does_not_take_a_cluster_the_group_is_a_minority_of() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1])
    v = unit(np.random.default_rng(1).normal(size=(6, 8)))
    out = apply_links(labels, v, Links(members=(np.array([0, 4, 5]),), pinned=(np.array([]),)))
    assert out[0] == out[1] == out[2] == out[3] and out[4] == out[5] and out[0] != out[4]


def test_apply_links_cuts_a_cluster_holding_two_groups_kept_apart() -> None:
    v, truth = blobs(2, 6, 0.05, seed=3)
    labels = np.zeros(12, dtype=np.int64)  # both people in one cluster
    links = Links(members=(np.array([0, 1]), np.array([6, 7])),
                  pinned=(np.array([], np.int64), np.array([], np.int64)), apart=((0, 1),))
    out = apply_links(labels, v, links)
    assert len(set(out[truth == 0])) == 1 and len(set(out[truth == 1])) == 1
    assert out[0] != out[6]


def test_a_lone_face_kept_apart_leaves_without_taking_neighbours() -> None:
    v, _ = blobs(1, 8, 0.05, seed=4)
    labels = np.zeros(8, dtype=np.int64)
    links = Links(members=(np.array([0, 1, 2, 3, 4, 5, 6]), np.array([7])),
                  pinned=(np.array([], np.int64), np.array([7])), apart=((0, 1),))
    out = apply_links(labels, v, links)
    assert len(set(out[:7])) == 1 and out[7] != out[0]


@pytest.mark.parametrize("answer", ["yes", "no"])
def test_cluster_faces_obeys_links(answer: str) -> None:
    params = default_params("yunet+dlib-resnet-v1")
    v, truth = blobs(3, 8, 0.02, seed=5)
    if answer == "yes":
        # Two people the clustering keeps apart; the user says they are one.
        links = Links(members=(np.flatnonzero(truth < 2),), pinned=(np.array([], np.int64),))
        alone = cluster_faces(v, params)
        assert alone[truth == 0][0] != alone[truth == 1][0]  # without the answer: two
        out = cluster_faces(v, params, links=links)
        assert len(set(out[truth < 2])) == 1 and out[0] != -1
        assert out[truth == 2][0] != out[0]
    else:
        # One person the user says is two: faces 0-3 are not faces 4-7.
        members = (np.arange(4), np.arange(4, 8))
        links = Links(members=members, pinned=(np.arange(4), np.arange(4, 8)),
                      apart=((0, 1),))
        out = cluster_faces(v, params, links=links)
        assert len(set(out[:4])) == 1 and len(set(out[4:8])) == 1 and out[0] != out[4]
        assert cluster_faces(v, params)[0] == cluster_faces(v, params)[4]  # without: one


def test_answers_in_labels_become_rows_with_consequences() -> None:
    labels = parse_labels(
        "[people]\n"
        'person-0001 = { name = "Mia", same_as = ["person-0002"] }\n'
        'person-0002 = { not = ["person-0003", "face-40"] }\n'
    )
    answers = answer_closure(labels)
    assert answers.different("person-0001", "person-0003")  # 1 = 2 and 2 != 3
    assert answers.different("face-40", "person-0001")
    assert canonical_people(answers, labels) == {2: 1}  # the named one stands for them
    assert canonical_people(answers, labels, known={2, 3}) == {1: 2}  # 1: a typo
    assert canonical_people(answers, labels, known={3}) == {}
    face_ids = [10, 11, 20, 21, 30, 31, 40]
    person_of = {10: 1, 11: 1, 20: 2, 21: 2, 30: 3, 31: 3, 40: 1}
    rows = face_links(answers, face_ids, person_of, {})
    groups = {frozenset(m.tolist()) for m in rows.links.members}
    assert frozenset({0, 1, 2, 3}) in groups  # face 40 is claimed by its own answer
    assert frozenset({6}) in groups and frozenset({4, 5}) in groups
    assert len(rows.links.apart) == 2
    assert (40, 1) in rows.excluded and (40, 2) in rows.excluded
    assert rows.person_for == {}


def test_a_face_answered_yes_is_pinned_to_the_person_it_is() -> None:
    answers = answer_closure(parse_labels('[people]\nperson-0005 = { same_as = ["face-7"] }\n'))
    rows = face_links(answers, [7, 8, 9], {8: 5, 7: 6}, {})
    assert rows.person_for == {7: 5}
    assert [p.tolist() for p in rows.links.pinned] == [[0]]
    # An anchored face-7 (the store was re-derived) is found by its match, not its number.
    moved = face_links(answers, [70, 8, 9], {8: 5}, {7: [70]})
    assert moved.person_for == {70: 5}


def test_split_finds_two_look_alikes_glued_into_one_person() -> None:
    from daemon.review.split import split_faces, stricter

    params = default_params("yunet+dlib-resnet-v1")
    rng = np.random.default_rng(8)
    centre = unit(rng.normal(size=(1, 32)))[0]
    other = unit(centre + 0.12 * unit(rng.normal(size=(1, 32)))[0])  # a look-alike
    v = unit(np.vstack([centre + rng.normal(scale=0.01, size=(7, 32)),
                        other + rng.normal(scale=0.01, size=(5, 32))]))
    ids = np.arange(100, 112)
    assert len(set(cluster_faces(v, params).tolist())) == 1  # usual settings: one person
    parts = split_faces(ids, v, None, stricter(params, 0.3))
    assert [len(p.faces) for p in parts] == [7, 5]
    assert set(parts[1].faces) == set(range(107, 112)) and len(parts[0].shown) == 6
    assert split_faces(ids[:3], v[:3], None, params) == []  # too few to split


def test_nearest_reference_in_blocks_and_on_a_sample(monkeypatch) -> None:
    from daemon.cluster import links

    v, truth = blobs(2, 40, 0.05, seed=9)
    rows, refs = np.arange(80), np.array([0, 1, 2, 40, 41, 42, 43, 44])
    full = links._nearest(v, rows, refs)
    assert (truth[refs[full]] == truth).all()
    monkeypatch.setattr(links, "_BLOCK", 3)  # 3 rows a block, 3 references sampled
    small = links._nearest(v, rows, refs)
    assert set(refs[small].tolist()) <= {0, 40, 44}  # the even sample: first, middle, last
    assert (truth[refs[small]] == truth).all()
