"""Identity anchors: the matching rules, the file, and the pipeline on synthetic faces."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from daemon.config import from_dict
from daemon.indexer.types import Face, IndexedPhoto
from daemon.people.anchors import (
    FaceKey,
    PlacedFace,
    anchored_ids,
    box_distance,
    match_keys,
)
from daemon.stages.pipeline import Pipeline
from daemon.store import anchors as anchors_file
from daemon.store.anchors import Anchors, AnchorsError

RNG = np.random.default_rng(11)


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


CENTRES = _unit(RNG.normal(size=(4, 128)))

# -- boxes ---------------------------------------------------------------------------------

# One face as dlib's HOG and YuNet box it (bald_guys.jpg and couple.jpg in the shared
# photos: centre offsets up to 0.19 face sizes, size ratios up to 1.38).
HOG = (1000.0, 400.0, 532.0, 532.0)
YUNET = (990.0, 330.0, 600.0, 700.0)


def test_one_face_boxed_by_two_detectors_matches() -> None:
    d = box_distance(HOG, YUNET)
    assert d is not None and d < 0.25


def test_a_neighbour_or_a_much_smaller_face_does_not_match() -> None:
    beside = (1000.0 + 0.7 * 532, 400.0, 532.0, 532.0)  # the closest neighbours seen
    assert box_distance(HOG, beside) > 0.4
    tiny = (1200.0, 600.0, 100.0, 100.0)  # a face in the background, same centre
    assert box_distance(HOG, tiny) is None


def test_keys_match_one_face_each_in_a_group_photo() -> None:
    left, right = FaceKey("g", (100, 100, 50, 50)), FaceKey("g", (140, 100, 50, 50))
    faces = [
        PlacedFace(7, 1, FaceKey("g", (138, 98, 55, 55))),  # right, re-detected
        PlacedFace(8, 1, FaceKey("g", (104, 100, 52, 50))),  # left, re-detected
    ]
    assert match_keys([left, right], faces) == {0: [8], 1: [7]}


def test_a_moved_or_copied_photo_still_matches_and_other_bytes_do_not() -> None:
    key = FaceKey("abc", (10, 10, 80, 80))
    faces = [
        PlacedFace(3, 10, FaceKey("abc", (12, 11, 78, 80))),  # the photo, moved: new row
        PlacedFace(4, 11, FaceKey("abc", (10, 10, 80, 80))),  # a byte-identical copy
        PlacedFace(5, 12, FaceKey("abd", (10, 10, 80, 80))),  # another photo, same box
    ]
    assert match_keys([key], faces) == {0: [3, 4]}


# -- mapping rules -------------------------------------------------------------------------


def _vectors(groups: list[int]) -> np.ndarray:
    return _unit(np.stack([CENTRES[g] + RNG.normal(scale=0.02, size=128) for g in groups]))


def _counter(start: int):
    ids = iter(range(start, 10_000))
    return lambda: next(ids)


def test_an_anchored_person_that_splits_keeps_its_id_where_most_anchors_are() -> None:
    faces = [1, 2, 3, 4, 5, 6]
    labels = [0, 0, 0, 1, 1, 1]
    anchored = {1: 7, 2: 7, 4: 7}  # person 7: two anchors in cluster 0, one in cluster 1
    result = anchored_ids(
        faces, labels, _vectors([0, 0, 0, 1, 1, 1]), {}, set(), set(), _counter(50),
        anchored, {7: ("id", 7)},
    )
    assert [result.assignment[f] for f in faces] == [7, 7, 7, 50, 50, 50]
    assert result.shared == []
    # Named, the anchor that went over keeps the name's person; the rest is someone new.
    named = anchored_ids(
        faces, labels, _vectors([0, 0, 0, 1, 1, 1]), {}, {7}, set(), _counter(50),
        anchored, {7: ("name", "Ann")},
    )
    assert [named.assignment[f] for f in faces] == [7, 7, 7, 7, 50, 50]


def test_two_anchored_people_in_one_cluster_are_kept_apart_and_reported() -> None:
    faces = list(range(1, 11))
    groups = [0] * 7 + [1] * 3  # a big person and a small one, clustered together
    anchored = {1: 7, 2: 7, 8: 9}
    result = anchored_ids(
        faces, [0] * 10, _vectors(groups), {}, {7, 9}, set(), _counter(50), anchored,
        {7: ("name", "Ann"), 9: ("name", "Bob")},
    )
    assert [result.assignment[f] for f in faces] == [7] * 7 + [9] * 3
    assert [(s.people, s.faces) for s in result.shared] == [((7, 9), 10)]


def test_the_same_name_on_two_ids_is_one_person_not_a_conflict() -> None:
    faces = [1, 2, 3, 4]
    result = anchored_ids(
        faces, [0, 0, 0, 0], _vectors([0, 0, 0, 0]), {}, {7, 9}, set(), _counter(50),
        {1: 7, 2: 7, 3: 9}, {7: ("name", "Ann"), 9: ("name", "Ann")},
    )
    assert result.shared == []
    assert {result.assignment[f] for f in faces} <= {7, 9}


def test_the_store_s_own_persons_win_over_anchors_and_exclusions_hold() -> None:
    faces = [1, 2, 3]
    result = anchored_ids(
        faces, [0, 0, 0], _vectors([0, 0, 0]), {1: 4, 2: 4, 3: 4}, set(), {(3, 4)},
        _counter(50), {1: 9}, {},
    )
    assert [result.assignment[f] for f in faces] == [4, 4, None]


# -- the file ------------------------------------------------------------------------------


def test_anchors_file_round_trips_and_refuses_garbage(tmp_path: Path) -> None:
    a = Anchors(
        people={7: (FaceKey("h1", (1.0, 2.0, 3.0, 4.0)),)},
        faces={12: FaceKey("h2", (5.0, 6.0, 7.0, 8.0))},
        photos={"2019/a.jpg": "h3"},
        face_ids_above=40,
        person_ids_above=9,
        conflicts=({"kind": "shared-cluster", "people": ["person-0007"]},),
    )
    path = tmp_path / "identity.json"
    anchors_file.write(path, a)
    assert anchors_file.read(path) == a
    assert "person-0007" in json.loads(path.read_text())["people"]
    assert anchors_file.read(tmp_path / "missing.json") == Anchors()
    for bad in ("{", '{"version": 2}', '{"version": 1, "people": {"x": []}}',
                '{"version": 1, "faces": {"face-1": ["h", 1, 2, 3]}}'):
        path.write_text(bad)
        with pytest.raises(AnchorsError):
            anchors_file.read(path)


# -- the pipeline, on synthetic faces --------------------------------------------------------


def _config(root: Path, **extra):
    (root / "photos").mkdir(exist_ok=True)
    return from_dict({"watch": ["photos"], "workers": 1, **extra}, root)


def _face(person: int, x: float = 10.0) -> Face:
    v = _unit(CENTRES[person] + RNG.normal(scale=0.02, size=128))
    return Face((x, 10.0, 80.0, 80.0), (), 0.99, v)


def _add(p: Pipeline, name: str, people: list[int], shift: float = 0.0) -> list[int]:
    """A photo whose content hash is its name, with faces side by side."""
    path = p.cfg.watch[0] / name
    path.write_bytes(name.encode())
    faces = tuple(_face(g, 10.0 + 200 * i + shift) for i, g in enumerate(people))
    photo = IndexedPhoto(path, 1000, 100, p.engine_id, faces)
    p.index_photos([])  # reserves ids, as a real round of indexing does first
    return p.store.save_indexed(path, 1, 1, name, photo)


LIBRARY = [("a0", [0]), ("a1", [0]), ("a2", [0]), ("b0", [1]), ("b1", [1]), ("b2", [1]),
           ("ab", [0, 1]), ("c0", [2]), ("c1", [2])]


def _person_of(p: Pipeline) -> dict[tuple[str, int], int | None]:
    """(photo name, position of the face) -> person id."""
    out = {}
    for f in p.store.faces():
        out[(f.path.name, round((f.box[0] - 10) / 200))] = f.person_id
    return out


def _build(p: Pipeline, shift: float = 0.0) -> None:
    for name, people in LIBRARY:
        _add(p, name, people, shift)
    p.recluster()
    p.write_albums()


def test_a_lost_store_gives_every_labelled_id_back_to_its_person(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    with Pipeline(cfg, create=True) as p:
        _add(p, "z0", [3])  # someone who is gone by the time of the rebuild
        _add(p, "z1", [3])
        _build(p)
        before = _person_of(p)
        a, b, c = before[("a0", 0)], before[("b0", 0)], before[("c0", 0)]
        excluded = next(f.id for f in p.store.faces() if f.path.name == "ab" and f.box[0] > 100)
        cfg.labels_file.write_text(
            f'[people]\nperson-{a:04d} = "Ann"\n'
            f'person-{b:04d} = {{ name = "Bob", exclude = ["face-{excluded}", "b2"] }}\n'
            f"person-{c:04d} = {{ hide = true }}\n"
        )
        assert p.reload_labels() is None
        p.recluster()
        p.write_albums()
        before = _person_of(p)
        top_face, top_person = p.store.top_ids()
    assert before[("ab", 1)] is None and before[("b2", 0)] is None
    for f in tmp_path.glob("state/facecluster.sqlite3*"):
        f.unlink()
    for f in tmp_path.glob("state/vectors*"):
        f.unlink()
    (tmp_path / "photos" / "z0").unlink()
    (tmp_path / "photos" / "z1").unlink()

    # Re-derived in another order, by an engine that boxes faces a little differently.
    with Pipeline(cfg, create=True) as p:
        _add(p, "c1", [2], shift=6.0)
        _add(p, "d0", [3], shift=6.0)  # a stranger (looks like the one who left)
        _add(p, "d1", [3], shift=6.0)
        _build(p, shift=6.0)
        after = _person_of(p)
        kept = {k: v for k, v in before.items() if not k[0].startswith("z")}
        assert {k: after[k] for k in kept} == kept
        assert all(f.id > top_face for f in p.store.faces())
        assert after[("d0", 0)] is not None and after[("d0", 0)] > top_person
        names = {r.key: r.name for r in p.people()}
        assert names[f"person-{a:04d}"] == "Ann" and names[f"person-{b:04d}"] == "Bob"


def test_a_shared_cluster_is_cut_and_reported_in_status_and_people_file(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    with Pipeline(cfg, create=True) as p:
        _add(p, "a3", [0])  # Ann has more faces than Bob
        _build(p)
        ids = _person_of(p)
        a, b = ids[("a0", 0)], ids[("b0", 0)]
        cfg.labels_file.write_text(f'[people]\nperson-{a:04d} = "Ann"\nperson-{b:04d} = "Bob"\n')
        assert p.reload_labels() is None
        p.write_albums()
        _add(p, "b3", [1])  # a new photo of Bob, not yet anchored
        # Their photo together would keep them apart at any eps (two faces of one photo
        # are two people, issue 11), and this test needs them glued together.
        p.remove([cfg.watch[0] / "ab"])
    # A much looser eps makes one cluster of everybody; a config change reopens the
    # pipeline, as the service does.
    loose = dataclasses.replace(cfg, clustering=dataclasses.replace(cfg.clustering, eps=1.99))
    with Pipeline(loose) as p:
        p.recluster()
        p.write_albums()
        after = _person_of(p)
        assert {after[(n, 0)] for n in ("a0", "a1", "a2")} == {a}
        assert {after[(n, 0)] for n in ("b0", "b1", "b2", "b3")} == {b}
        conflicts = p.status().as_dict()["identity_conflicts"]
    assert len(conflicts) == 1
    assert conflicts[0]["kind"] == "shared-cluster"
    assert conflicts[0]["people"] == [f"person-{a:04d}", f"person-{b:04d}"]
    assert conflicts[0]["names"] == ["Ann", "Bob"]
    assert "Ann" in conflicts[0]["message"] and "Bob" in conflicts[0]["message"]
    people_file = (tmp_path / "state" / "people.toml").read_text()
    assert f"# CONFLICT: person-{a:04d} (Ann) and person-{b:04d} (Bob)" in people_file
    # It survives the process: a reading command sees it.
    with Pipeline(cfg) as p:
        assert p.status().identity_conflicts == conflicts


def test_a_broken_anchors_file_is_set_aside_not_fatal(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    (tmp_path / "state").mkdir(mode=0o700)
    (tmp_path / "state" / "identity.json").write_text("{not json")
    with Pipeline(cfg, create=True) as p:
        _build(p)
    assert anchors_file.read(tmp_path / "state" / "identity.json").person_ids_above > 0
    aside = list((tmp_path / "state").glob("identity.json.broken-*"))
    assert len(aside) == 1 and aside[0].read_text() == "{not json"


def test_rebuild_anchors_names_written_since_the_last_clustering(tmp_path: Path) -> None:
    from daemon.cli.rebuild import rebuild

    cfg = _config(tmp_path)
    with Pipeline(cfg, create=True) as p:
        _add(p, "z0", [3])  # an early person: ids are handed out in another order later
        _add(p, "z1", [3])
        _build(p)
        before = _person_of(p)
    a = before[("a0", 0)]
    # Named while nothing ran: no clustering has seen this name yet.
    cfg.labels_file.write_text(f'[people]\nperson-{a:04d} = "Ann"\n')
    aside = rebuild(cfg)
    assert (aside / "facecluster.sqlite3").exists()
    assert (tmp_path / "state" / "identity.json").exists()
    with Pipeline(cfg, create=True) as p:
        _build(p, shift=-5.0)
        after = _person_of(p)
        assert {after[(n, 0)] for n in ("a0", "a1", "a2")} == {a}
        assert {r.name for r in p.people() if r.id == a} == {"Ann"}


# -- the id counter (issue 21 item 3) -------------------------------------------------------


def _new_person(p: Pipeline, names: tuple[str, ...] = ("d0", "d1")) -> int:
    """Add photos of a stranger (centre 3), re-cluster; their person id."""
    for name in names:
        _add(p, name, [3])
    p.recluster()
    p.write_albums()
    ids = {_person_of(p)[(n, 0)] for n in names}
    assert len(ids) == 1 and None not in ids
    return ids.pop()


def test_a_mention_of_an_unknown_id_does_not_move_the_counter(tmp_path: Path) -> None:
    from daemon.people.naming import hide_person

    cfg = _config(tmp_path)
    with Pipeline(cfg, create=True) as p:
        _build(p)
        top = p.store.top_ids()[1]
        # A typo, and a hide of an id that names nobody (the page's POST /hide).
        cfg.labels_file.write_text('[people]\nperson-0099 = "Typo"\n')
        hide_person(cfg.labels_file, 999_999_999_999)
        assert p.reload_labels() is None
        p.index_photos([])
        p.recluster()
        assert p.store.top_ids()[1] == top
        cfg.labels_file.write_text("[people]\n")  # the typo removed a minute later
        assert p.reload_labels() is None
        assert _new_person(p) == top + 1
    assert anchors_file.read(tmp_path / "state" / "identity.json").person_ids_above == top + 1


def test_an_id_written_down_is_stepped_over_not_given_to_a_stranger(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    with Pipeline(cfg, create=True) as p:
        _build(p)
        top = p.store.top_ids()[1]
        cfg.labels_file.write_text(f'[people]\nperson-{top + 1:04d} = "Bob?"\n')
        assert p.reload_labels() is None
        assert _new_person(p) == top + 2
        assert p.unknown_labelled()  # still reported as naming nobody


def test_a_poisoned_counter_recovers(tmp_path: Path) -> None:
    from daemon.albums.spare import read_spare

    cfg = _config(tmp_path)
    with Pipeline(cfg, create=True) as p:
        _build(p)
        top = p.store.top_ids()[1]
        # What a hide of person-999999999999 did before: the store's counter and the
        # anchors' high mark at the last id, and the next new person past it.
        p.store.keep_ids_above(0, 999_999_999_999)
        poisoned = p.store.new_person_id()
        assert poisoned == 10**12
        for name in ("e0", "e1"):
            path = cfg.watch[0] / name
            path.write_bytes(name.encode())
            photo = IndexedPhoto(path, 1000, 100, p.engine_id, (_face(3),))
            faces = p.store.save_indexed(path, 1, 1, name, photo)
            p.store.set_persons({f: poisoned for f in faces})
    state = tmp_path / "state" / "identity.json"
    anchors_file.write(state, dataclasses.replace(
        anchors_file.read(state), person_ids_above=10**12))
    with Pipeline(cfg) as p:
        p.index_photos([])
        p.recluster()
        p.write_albums()
        ids = {r.id for r in p.store.people() if not r.retired}
        assert max(ids) <= 999_999_999_999
        stranger = _person_of(p)[("e0", 0)]
        assert stranger == top + 1
        assert p.store.top_ids()[1] < 999_999_999_999
    assert anchors_file.read(state).person_ids_above == top + 1
    spare = read_spare(tmp_path / "albums", anchors_file.FILE_NAME, anchors_file.MAX_BYTES)
    assert spare is not None
    assert anchors_file.parse(spare.decode()).person_ids_above == top + 1
