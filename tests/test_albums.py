"""Album plans, the album tree on disk, pictures and ZIP export, on synthetic photos."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.albums import (
    AlbumError,
    AlbumPlan,
    ExportError,
    FaceRef,
    KnownPhotos,
    entry_name,
    export_zip,
    plan_albums,
    write_albums,
    write_pictures,
)
from daemon.albums import entries as entries_mod
from daemon.albums import tree as tree_mod
from daemon.albums import writer as writer_mod
from daemon.albums.pictures import (
    THUMB_SIZE,
    crop_face,
    face_quality,
    rank_faces,
    thumbnail_names,
)
from daemon.people.labels import Labels, parse_labels, person_key


def _photo(path: Path, seed: int, size: tuple[int, int] = (120, 160)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), rng.integers(0, 255, (*size, 3), dtype=np.uint8))
    return path


@pytest.fixture()
def photos(tmp_path: Path) -> dict[str, Path]:
    """Six small originals, two of them both called IMG_0001.jpg."""
    root = tmp_path / "photos"
    names = ["2019/IMG_0001.jpg", "2020/IMG_0001.jpg", "2020/group.jpg", "park.png",
             "Zoë's party/王芳.jpg", "2021/IMG_0042.jpg"]
    return {n: _photo(root / n, i) for i, n in enumerate(names)}


def _state(root: Path) -> dict[str, tuple[int, int, str]]:
    """path -> (mtime_ns, size, sha1) of every file under ``root``: proves nothing changed."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st_ = p.stat()
            out[str(p)] = (st_.st_mtime_ns, st_.st_size, hashlib.sha1(p.read_bytes()).hexdigest())
    return out


def _tree(albums: Path) -> dict[str, set[str]]:
    """folder -> entry names, ignoring the hidden state and thumbnail folders."""
    return {
        d.name: {e.name for e in d.iterdir()}
        for d in albums.iterdir()
        if not d.name.startswith(".") and d.is_dir() and not d.is_symlink()
    }


def _pictures(albums: Path, folder: str) -> tuple[Path, Path]:
    """Where an album's thumbnail and montage are, as the documented layout says."""
    thumbs = albums / ".thumbnails"
    return thumbs / f"{folder}.jpg", thumbs / f"{folder}.montage.jpg"


def _face(fid: int, path: Path, score: float = 0.9, box=(30.0, 20.0, 40.0, 50.0)) -> FaceRef:
    return FaceRef(fid, path, box, score)


def _plans(photos: dict[str, Path], labels: Labels, no_face: str = "skip") -> list[AlbumPlan]:
    """People 1, 2, 3 all in the group photo; 1 also in both IMG_0001; 4 in IMG_0042."""
    g, a, b, c = (photos[k] for k in ("2020/group.jpg", "2019/IMG_0001.jpg",
                                       "2020/IMG_0001.jpg", "2021/IMG_0042.jpg"))
    person_photos = {1: {g, a, b}, 2: {g}, 3: {g, photos["Zoë's party/王芳.jpg"]}, 4: {c}}
    person_faces = {
        1: [_face(11, g), _face(12, a), _face(13, b)],
        2: [_face(21, g, box=(70.0, 20.0, 40.0, 50.0))],
        3: [_face(31, g, box=(110.0, 20.0, 40.0, 50.0)),
            _face(32, photos["Zoë's party/王芳.jpg"])],
        4: [_face(41, c)],
    }
    root = next(iter(photos.values())).parents[0]
    while root.name != "photos":
        root = root.parent
    return plan_albums(person_photos, person_faces, labels, {photos["park.png"]}, no_face, [root])


# -- plans ----------------------------------------------------------------------------------


def test_unnamed_people_get_their_key(photos: dict[str, Path]) -> None:
    plans = _plans(photos, Labels())
    assert [p.folder for p in plans] == [person_key(i) for i in (1, 2, 3, 4)]
    assert plans[0].photos == tuple(sorted(plans[0].photos))
    assert len(plans[0].photos) == 3


def test_a_name_that_is_an_id_as_a_folder_never_takes_that_id_s_folder(
    photos: dict[str, Path],
) -> None:
    """Issue 21 item 13: "person-0004." became the folder person-0004 while holding 3."""
    hidden = parse_labels('[people]\nperson-0003 = "person-0004."\nperson-0004 = { hide = true }')
    shown = parse_labels('[people]\nperson-0003 = "person-0004."')
    for labels in (hidden, shown):
        plans = {p.folder: p for p in _plans(photos, labels)}
        assert plans["person-0004 (person-0003)"].person_ids == (3,)
        assert plans.get("person-0004") is None or plans["person-0004"].person_ids == (4,)


def test_same_name_merges_hide_hides(photos: dict[str, Path]) -> None:
    labels = parse_labels(
        '[people]\nperson-0001 = "Grandma"\nperson-0003 = "Grandma"\nperson-0004 = { hide = true }'
    )
    plans = {p.folder: p for p in _plans(photos, labels)}
    assert set(plans) == {"Grandma", "person-0002"}
    assert plans["Grandma"].person_ids == (1, 3)
    assert len(plans["Grandma"].photos) == 4  # union: group photo once
    assert {f.face_id for f in plans["Grandma"].faces} == {11, 12, 13, 31, 32}


def test_exclude_photo_and_face(photos: dict[str, Path]) -> None:
    labels = parse_labels(
        '[people]\nperson-0001 = { name = "Tom", exclude = ["2019/IMG_0001.jpg", "face-13"] }\n'
        'person-0003 = { exclude = ["face-31"] }\n'
    )
    plans = {p.folder: p for p in _plans(photos, labels)}
    assert plans["Tom"].photos == (photos["2020/group.jpg"],)
    assert {f.face_id for f in plans["Tom"].faces} == {11}
    # person 3's only face in the group photo was rejected: the photo leaves the album
    assert plans["person-0003"].photos == (photos["Zoë's party/王芳.jpg"],)


def test_no_face_policies(photos: dict[str, Path]) -> None:
    park = photos["park.png"]
    assert all(park not in p.photos for p in _plans(photos, Labels(), "skip"))
    album = {p.folder: p for p in _plans(photos, Labels(), "album")}
    assert album["No faces"].photos == (park,) and album["No faces"].person_ids == ()
    assert all(park in p.photos for p in _plans(photos, Labels(), "all"))
    with pytest.raises(ValueError):
        _plans(photos, Labels(), "some")


def test_folder_collisions_are_deterministic(photos: dict[str, Path]) -> None:
    labels = parse_labels(
        '[people]\nperson-0001 = "person-0002"\nperson-0003 = "a/b"\nperson-0004 = "A_B"\n'
    )
    folders = {p.person_ids: p.folder for p in _plans(photos, labels)}
    assert folders == {
        (2,): "person-0002",  # the unnamed person keeps its own key
        (1,): "person-0002 (person-0001)",
        (3,): "a_b",
        (4,): "A_B (person-0004)",  # same folder on a case-insensitive share
    }
    # the same people given in another order get the same folders
    g = photos["2020/group.jpg"]
    forward = plan_albums({3: {g}, 4: {g}}, {}, labels, set(), "skip", [])
    backward = plan_albums({4: {g}, 3: {g}}, {}, labels, set(), "skip", [])
    assert forward == backward


# -- writing the tree -----------------------------------------------------------------------


def test_three_people_in_one_photo_relative_symlinks(tmp_path: Path, photos) -> None:
    before = _state(tmp_path / "photos")
    albums = tmp_path / "albums"
    report = write_albums(albums, _plans(photos, Labels()), "symlink")
    assert report.added == 7 and report.errors == 0
    group = entry_name(photos["2020/group.jpg"])
    tree = _tree(albums)
    assert all(group in tree[person_key(i)] for i in (1, 2, 3))
    # two IMG_0001.jpg from different folders: two entries
    assert len([n for n in tree["person-0001"] if n.startswith("IMG_0001~")]) == 2
    for folder, names in tree.items():
        for name in names:
            link = albums / folder / name
            assert link.is_symlink() and not os.readlink(link).startswith("/")
            assert link.resolve().read_bytes()  # resolves to an original
    assert _state(tmp_path / "photos") == before


def test_second_run_touches_nothing(tmp_path: Path, photos) -> None:
    albums = tmp_path / "albums"
    plans = _plans(photos, Labels())
    write_albums(albums, plans, "symlink")
    stamp = {p: p.lstat().st_mtime_ns for p in albums.rglob("*")}  # manifest included
    report = write_albums(albums, plans, "symlink")
    assert (report.added, report.removed, report.kept) == (0, 0, 7)
    assert {p: p.lstat().st_mtime_ns for p in albums.rglob("*")} == stamp


def test_relabel_moves_entries_and_removes_old_folder(tmp_path: Path, photos) -> None:
    albums = tmp_path / "albums"
    write_albums(albums, _plans(photos, Labels()), "symlink")
    inode = (albums / "person-0001" / entry_name(photos["2019/IMG_0001.jpg"])).lstat().st_ino
    labels = parse_labels('[people]\nperson-0001 = "Grandma"\nperson-0002 = "Grandma"\n')
    report = write_albums(albums, _plans(photos, labels), "symlink")
    tree = _tree(albums)
    assert "person-0001" not in tree and "person-0002" not in tree
    assert len(tree["Grandma"]) == 3
    assert (albums / "Grandma" / entry_name(photos["2019/IMG_0001.jpg"])).lstat().st_ino == inode
    assert report.errors == 0 and report.removed >= 3
    # and the links still resolve after the move
    assert all((albums / "Grandma" / n).resolve().is_file() for n in tree["Grandma"])


def test_stale_entries_go_user_files_stay(tmp_path: Path, photos) -> None:
    albums = tmp_path / "albums"
    write_albums(albums, _plans(photos, Labels()), "symlink")
    mine = albums / "person-0004" / "my notes.txt"
    mine.write_text("mine")
    (albums / "README.txt").write_text("mine too")
    # a user replaces one entry by their own file of the same name
    replaced = albums / "person-0001" / entry_name(photos["2019/IMG_0001.jpg"])
    replaced.unlink()
    replaced.write_text("user's own")
    report = write_albums(albums, [], "symlink")
    assert mine.read_text() == "mine" and (albums / "README.txt").read_text() == "mine too"
    assert replaced.read_text() == "user's own"
    tree = _tree(albums)
    assert tree == {"person-0001": {replaced.name}, "person-0004": {"my notes.txt"}}
    assert report.removed == 6
    # a clash with the user's file is reported, not overwritten
    clash = write_albums(albums, _plans(photos, Labels()), "symlink")
    assert clash.errors == 1 and replaced.read_text() == "user's own"


def test_planted_symlink_is_not_followed(tmp_path: Path, photos) -> None:
    albums = tmp_path / "albums"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("x")
    albums.mkdir()
    (albums / "person-0001").symlink_to(outside)
    report = write_albums(albums, _plans(photos, Labels()), "symlink")
    assert report.errors == 3  # person-0001's three photos
    assert [p.name for p in outside.iterdir()] == ["keep.txt"]
    assert (albums / "person-0001").is_symlink()
    # a planted state folder is refused outright
    state = albums / ".facecluster"
    for p in state.iterdir():
        p.unlink()
    state.rmdir()
    state.symlink_to(outside)
    with pytest.raises(AlbumError, match="symlink"):
        write_albums(albums, _plans(photos, Labels()), "symlink")
    assert [p.name for p in outside.iterdir()] == ["keep.txt"]


def test_tampered_manifest_cannot_remove_outside(tmp_path: Path, photos) -> None:
    albums = tmp_path / "albums"
    write_albums(albums, _plans(photos, Labels()), "symlink")
    victim = tmp_path / "victim.txt"
    victim.write_text("x")
    manifest = albums / ".facecluster" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["entries"]["../victim.txt"] = {"source": str(victim), "mode": "copy",
                                        "ino": victim.stat().st_ino}
    data["folders"].append("..")
    manifest.write_text(json.dumps(data))
    write_albums(albums, [], "symlink")
    assert victim.read_text() == "x"


def test_copy_mode_keeps_mtime_and_switches_modes(tmp_path: Path, photos) -> None:
    albums = tmp_path / "albums"
    before = _state(tmp_path / "photos")
    plans = _plans(photos, Labels())
    write_albums(albums, plans, "symlink")
    report = write_albums(albums, plans, "copy")
    assert (report.added, report.kept, report.errors) == (7, 0, 0)  # replaced in place
    src = photos["2020/group.jpg"]
    copy = albums / "person-0002" / entry_name(src)
    assert not copy.is_symlink() and copy.stat().st_ino != src.stat().st_ino
    assert copy.read_bytes() == src.read_bytes()
    assert copy.stat().st_mtime_ns == src.stat().st_mtime_ns
    again = write_albums(albums, plans, "copy")
    assert (again.added, again.kept) == (0, 7)
    # an edited original is copied again
    _photo(src, 99)
    assert write_albums(albums, plans, "copy").added == 3
    assert copy.read_bytes() == src.read_bytes()
    # hardlink: the same inode as the original
    write_albums(albums, plans, "hardlink")
    assert copy.stat().st_ino == src.stat().st_ino
    del before[str(src)]
    after = _state(tmp_path / "photos")
    del after[str(src)]
    assert after == before
    assert not [p for p in albums.rglob(".facecluster-tmp-*")]


def test_hardlink_falls_back_to_copy(tmp_path: Path, photos, monkeypatch) -> None:
    def no_link(*args, **kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(entries_mod.os, "link", no_link)
    albums = tmp_path / "albums"
    plans = _plans(photos, Labels())
    report = write_albums(albums, plans, "hardlink")
    assert report.added == 7 and report.errors == 0
    entry = albums / "person-0004" / entry_name(photos["2021/IMG_0042.jpg"])
    assert entry.read_bytes() == photos["2021/IMG_0042.jpg"].read_bytes()
    assert write_albums(albums, plans, "hardlink").kept == 7  # the fallback copy stays


def test_disk_full_is_reported_and_removals_still_happen(tmp_path: Path, photos, monkeypatch):
    albums = tmp_path / "albums"
    write_albums(albums, _plans(photos, Labels()), "symlink")
    real_symlink = os.symlink

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(entries_mod.os, "symlink", full)
    labels = parse_labels('[people]\nperson-0004 = { hide = true }\n')
    g = photos["2020/group.jpg"]
    plans = _plans(photos, labels) + [AlbumPlan("New", (9,), (g, photos["park.png"]), ())]
    report = write_albums(albums, plans, "symlink")
    assert report.no_space and report.errors == 2 and report.removed == 1
    assert "person-0004" not in _tree(albums)
    monkeypatch.setattr(entries_mod.os, "symlink", real_symlink)
    retry = write_albums(albums, plans, "symlink")
    assert not retry.no_space and retry.added == 2


def test_unsafe_plans_are_refused(tmp_path: Path) -> None:
    for folder in ("..", "a/b", ".facecluster", ""):
        with pytest.raises(AlbumError):
            write_albums(tmp_path / "albums", [AlbumPlan(folder, (1,), (), ())], "symlink")
    with pytest.raises(AlbumError):
        write_albums(tmp_path / "albums", [], "move")


def test_entry_names_are_stable_and_bounded() -> None:
    a = entry_name(Path("/p/2019/IMG_0001.jpg"))
    assert a == entry_name(Path("/p/2019/IMG_0001.jpg"))
    assert a != entry_name(Path("/p/2020/IMG_0001.jpg"))
    assert a.startswith("IMG_0001~") and a.endswith(".jpg")
    long = entry_name(Path("/p/" + "é" * 200 + ".jpeg"))
    assert len(long.encode()) <= 255 and long.endswith(".jpeg")

    # The name is what existing album trees hold: it must not change between versions.
    digest = hashlib.sha1(b"/p/2019/IMG_0001.jpg").hexdigest()[:8]
    assert a == f"IMG_0001~{digest}.jpg"


def test_picture_names_of_long_folders_fit_and_stay_apart() -> None:
    assert thumbnail_names("Grandma") == ("Grandma.jpg", "Grandma.montage.jpg")
    one, other = "é" * 126 + "a", "é" * 126 + "b"  # 253 bytes: no room for the suffixes
    names = [*thumbnail_names(one), *thumbnail_names(other)]
    assert all(len(n.encode()) <= 255 for n in names)
    assert len(set(names)) == 4
    assert names[0].endswith(".jpg") and names[1].endswith(".montage.jpg")


_hostile = st.one_of(
    st.sampled_from(["..", ".", "/etc", "../../x", "CON", "a\x00b", "Zoë", "王芳", "x" * 300,
                     ".facecluster", ".thumbnails", "person-0002", "No faces"]),
    st.text(min_size=1, max_size=80),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(_hostile, min_size=1, max_size=4))
def test_fuzzed_names_stay_inside_albums(names: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        photo = _photo(base / "photos" / "a.jpg", 1, (8, 8))
        text = "[people]\n" + "".join(
            f"{person_key(i + 1)} = {json.dumps(n)}\n" for i, n in enumerate(names) if n.strip()
        )
        try:
            labels = parse_labels(text)
        except Exception as e:  # json escapes are valid TOML except a few; still LabelsError
            assert type(e).__name__ == "LabelsError"
            return
        people = {i + 1: {photo} for i in range(len(names))}
        plans = plan_albums(people, {}, labels, {photo}, "album", [base / "photos"])
        assert len({p.folder.casefold() for p in plans}) == len(plans)
        albums = base / "albums"
        report = write_albums(albums, plans, "symlink")
        assert report.errors == 0
        for p in base.rglob("*"):
            assert p == base / "photos" or p.is_relative_to(albums) or p == photo
        assert write_albums(albums, [], "symlink").removed == len(plans)
        assert sorted(os.listdir(albums)) == [".facecluster"]


# -- pictures -------------------------------------------------------------------------------


def test_best_face_ranking() -> None:
    p = Path("/x.jpg")
    small = FaceRef(1, p, (0, 0, 40, 40), 0.99)
    big = FaceRef(2, p, (0, 0, 200, 200), 0.9)
    turned = FaceRef(3, p, (0, 0, 200, 200), 0.9, ((50, 80), (150, 80), (150, 120)))
    frontal = FaceRef(4, p, (0, 0, 200, 200), 0.9, ((50, 80), (150, 80), (100, 120)))
    assert face_quality(big) > face_quality(small)
    assert face_quality(frontal) > face_quality(turned)
    assert [f.face_id for f in rank_faces([small, turned, big, frontal])][:2] == [2, 4]


def test_thumbnails_and_montages(tmp_path: Path, photos) -> None:
    albums = tmp_path / "albums"
    plans = _plans(photos, Labels())
    write_albums(albums, plans, "symlink")
    report = write_pictures(albums, plans, 10_000_000)
    assert report.written == 4 and report.errors == 0
    thumb, montage = _pictures(albums, "person-0001")
    assert cv2.imread(str(thumb)).shape == (256, 256, 3)
    assert cv2.imread(str(montage)).shape == (256, 256, 3)  # 3 faces: a 2x2 grid of 128
    tree_stamp = {p: p.lstat().st_mtime_ns for p in albums.rglob("*")}
    assert write_pictures(albums, plans).kept == 4
    assert {p: p.lstat().st_mtime_ns for p in albums.rglob("*")} == tree_stamp
    stamp = thumb.stat().st_mtime_ns
    labels = parse_labels('[people]\nperson-0001 = { exclude = ["face-11"] }\n'
                          'person-0004 = { hide = true }\n')
    changed = _plans(photos, labels)
    again = write_pictures(albums, changed)
    assert (again.written, again.kept, again.removed) == (1, 2, 1)
    assert not _pictures(albums, "person-0004")[0].exists()
    assert thumb.stat().st_mtime_ns >= stamp
    # nothing of this shows up in an album folder
    assert all(not n.endswith(".montage.jpg") for names in _tree(albums).values() for n in names)


def test_thumbnail_from_a_reduced_decode_shows_the_same_face(tmp_path: Path) -> None:
    # A 12 MP photo is decoded at 1/4 for a big face; the crop must still be the same
    # place of the photo as a full decode's (the box is scaled with the image).
    h, w = 1800, 3000
    yy, xx = np.mgrid[0:h, 0:w]
    photo = np.dstack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) % 256)]).astype(np.uint8)
    path = tmp_path / "big.jpg"
    cv2.imwrite(str(path), photo, [cv2.IMWRITE_JPEG_QUALITY, 95])
    box = (1400.0, 500.0, 700.0, 700.0)
    plan = AlbumPlan("X", (1,), (path,), (FaceRef(1, path, box, 0.99),))
    (tmp_path / "albums").mkdir()
    assert write_pictures(tmp_path / "albums", [plan]).written == 1
    thumb = cv2.imread(str(_pictures(tmp_path / "albums", "X")[0])).astype(float)
    full = cv2.imread(str(path))
    want = crop_face(full, box, THUMB_SIZE).astype(float)
    moved = crop_face(full, (1100.0, 500.0, 700.0, 700.0), THUMB_SIZE).astype(float)
    assert np.abs(thumb[..., :2] - want[..., :2]).mean() < 3
    assert np.abs(thumb[..., :2] - moved[..., :2]).mean() > 6


def _solid_crop(colour: tuple[int, int, int], side: int = 160) -> bytes:
    return cv2.imencode(".jpg", np.full((side, side, 3), colour, np.uint8))[1].tobytes()


def test_pictures_come_from_stored_crops_without_the_photos(tmp_path: Path) -> None:
    # Faces with a stored crop need no photo at all (here: none exists); a face without
    # one (a store older than the crops) falls back to decoding its photo.
    gone = tmp_path / "gone.jpg"
    kept = tmp_path / "kept.jpg"
    yy, xx = np.mgrid[0:400, 0:400]
    cv2.imwrite(str(kept), np.dstack([xx * 255 // 400, yy * 255 // 400, 0 * xx]).astype(np.uint8))
    faces = (FaceRef(1, gone, (0, 0, 300, 300), 0.99), FaceRef(2, gone, (0, 0, 9, 9), 0.5),
             FaceRef(3, kept, (100, 100, 150, 150), 0.4))
    plan = AlbumPlan("X", (1,), (gone, kept), faces)
    stored = {1: _solid_crop((0, 0, 250)), 2: _solid_crop((0, 250, 0))}
    asked: list[list[int]] = []

    def crops(ids):
        asked.append(list(ids))
        return {i: stored[i] for i in ids if i in stored}

    (tmp_path / "albums").mkdir()
    report = write_pictures(tmp_path / "albums", [plan], crops=crops)
    assert (report.written, report.errors) == (1, 0) and sorted(asked[0]) == [1, 2, 3]
    thumb_path, montage_path = _pictures(tmp_path / "albums", "X")
    thumb = cv2.imread(str(thumb_path))
    assert thumb.shape == (THUMB_SIZE, THUMB_SIZE, 3)
    assert np.abs(thumb.astype(float) - (0, 0, 250)).mean() < 6  # the stored crop, enlarged
    # 2x2 cells of 128, one face per photo first: faces 1, 3, then 2
    montage = cv2.imread(str(montage_path)).astype(float)
    assert np.abs(montage[128:, :128] - (0, 250, 0)).mean() < 6
    want = crop_face(cv2.imread(str(kept)), (100, 100, 150, 150), 128).astype(float)
    assert np.abs(montage[:128, 128:] - want).mean() < 8  # decoded from its photo


def test_unreadable_photo_costs_only_its_face(tmp_path: Path, photos) -> None:
    broken = tmp_path / "photos" / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    plan = AlbumPlan("X", (1,), (broken, photos["2019/IMG_0001.jpg"]),
                     (FaceRef(1, broken, (0, 0, 99, 99), 0.99),
                      _face(2, photos["2019/IMG_0001.jpg"])))
    (tmp_path / "albums").mkdir()
    assert write_pictures(tmp_path / "albums", [plan]).written == 1
    dead = AlbumPlan("Y", (2,), (broken,), (FaceRef(3, broken, (0, 0, 9, 9), 0.9),))
    assert write_pictures(tmp_path / "albums", [plan, dead]).errors == 1


# -- export ---------------------------------------------------------------------------------


def _known(photos: dict[str, Path]) -> KnownPhotos:
    """Every photo of the fixture, as the store would know them."""
    root = next(iter(photos.values())).parents[0]
    while root.name != "photos":
        root = root.parent
    return KnownPhotos(frozenset(photos.values()), (root,))


def test_export_zip(tmp_path: Path, photos) -> None:
    albums = tmp_path / "albums"
    write_albums(albums, _plans(photos, Labels()), "symlink")
    (albums / "person-0001" / "planted.jpg").symlink_to("/etc/hostname")
    out = tmp_path / "out" / "tom.zip"
    out.parent.mkdir()
    assert export_zip(albums, "person-0001", out, known=_known(photos)) == 3
    with zipfile.ZipFile(out) as zf:
        names = sorted(zf.namelist())
        assert names == sorted(set(os.listdir(albums / "person-0001")) - {"planted.jpg"})
        for name in names:
            assert "/" not in name and not name.startswith(".")
            assert zf.read(name) == (albums / "person-0001" / name).resolve().read_bytes()
    assert os.listdir(out.parent) == ["tom.zip"]
    with pytest.raises(ExportError, match="no album"):
        export_zip(albums, "Nobody", tmp_path / "x.zip", known=_known(photos))
    for bad in ("..", "../photos", ".facecluster"):
        with pytest.raises(ExportError):
            export_zip(albums, bad, tmp_path / "x.zip", known=_known(photos))
    assert not (tmp_path / "x.zip").exists()


def test_nas_litter_does_not_keep_a_folder(tmp_path: Path, photos) -> None:
    albums = tmp_path / "albums"
    write_albums(albums, _plans(photos, Labels()), "symlink")
    (albums / "person-0004" / "@eaDir" / "x").mkdir(parents=True)
    (albums / "person-0004" / ".DS_Store").write_text("x")
    (albums / "person-0002" / "@eaDir").mkdir()
    (albums / "person-0002" / "holiday.txt").write_text("mine")
    write_albums(albums, [p for p in _plans(photos, Labels()) if p.folder == "person-0001"],
                 "symlink")
    assert set(_tree(albums)) == {"person-0001", "person-0002"}
    assert (albums / "person-0002" / "holiday.txt").read_text() == "mine"


def test_links_survive_moving_the_share(tmp_path: Path) -> None:
    share = tmp_path / "share"
    photo = _photo(share / "photos" / "a.jpg", 3)
    via = tmp_path / "albums-link"  # the albums dir reached through a symlinked path
    (share / "albums").mkdir()
    via.symlink_to(share / "albums")
    write_albums(via, [AlbumPlan("Tom", (1,), (photo,), ())], "symlink")
    moved = tmp_path / "mounted-elsewhere"
    share.rename(moved)
    entry = moved / "albums" / "Tom" / entry_name(photo)
    assert entry.resolve() == (moved / "photos" / "a.jpg").resolve()
    assert entry.read_bytes() == (moved / "photos" / "a.jpg").read_bytes()


@pytest.mark.parametrize("mode", ["symlink", "copy", "hardlink"])
def test_lost_manifest_entries_are_adopted(tmp_path: Path, photos, mode: str) -> None:
    albums = tmp_path / "albums"
    plans = _plans(photos, Labels())
    write_albums(albums, plans, mode)
    (albums / ".facecluster" / "manifest.json").write_text("{ not json")
    report = write_albums(albums, plans, mode)
    assert (report.added, report.kept, report.errors) == (0, 7, 0)
    assert write_albums(albums, [], mode).removed == 7
    assert _tree(albums) == {}


def test_temp_files_of_a_killed_run_are_cleared(tmp_path: Path, photos) -> None:
    albums = tmp_path / "albums"
    plans = _plans(photos, Labels())
    write_albums(albums, plans, "copy")
    write_pictures(albums, plans)
    litter = [albums / d / ".facecluster-tmp-0123456789abcdef"
              for d in ("person-0001", "person-0004", ".facecluster", ".thumbnails")]
    for p in litter:
        p.write_bytes(b"half a file")
    user_file = albums / "person-0001" / ".facecluster-notes"  # not our prefix: kept
    user_file.write_text("mine")
    kept = [p for p in plans if p.folder != "person-0004"]
    write_albums(albums, kept, "copy")
    write_pictures(albums, kept)
    assert [p for p in litter if p.exists()] == []
    assert not (albums / "person-0004").exists(), "temp file kept an unwanted folder"
    assert user_file.read_text() == "mine"


@pytest.mark.parametrize("mode", ["symlink", "copy"])
def test_export_reads_only_what_the_entry_is(tmp_path: Path, photos, mode: str) -> None:
    albums = tmp_path / "albums"
    write_albums(albums, _plans(photos, Labels()), mode)
    secret = tmp_path / "secret.txt"
    secret.write_text("private key material")
    path = albums / ".facecluster" / "manifest.json"
    manifest = json.loads(path.read_text())
    for rec in manifest["entries"].values():
        rec["source"] = str(secret)
    path.write_text(json.dumps(manifest))
    out = tmp_path / "tom.zip"
    # the edited source is no photo the store knows: no entry of it is read, whatever its
    # mode (and a copy would be read as the entry itself, never the source)
    assert export_zip(albums, "person-0001", out, known=_known(photos)) == 0
    with zipfile.ZipFile(out) as zf:
        contents = {zf.read(n) for n in zf.namelist()}
    assert b"private key material" not in contents
    assert contents <= {p.read_bytes() for p in photos.values()}


@pytest.mark.parametrize("mode", ["symlink", "copy", "hardlink"])
def test_entries_of_a_killed_run_are_adopted_or_removed(
    tmp_path: Path, photos, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    albums = tmp_path / "albums"
    manifest = albums / ".facecluster" / "manifest.json"
    plans = _plans(photos, Labels())
    on_disk: list[bytes] = []
    real_create = tree_mod.AlbumTree.create

    def create(self, *args, **kwargs):
        if not on_disk:  # the manifest as it is when the first entry gets made
            on_disk.append(manifest.read_bytes())
        return real_create(self, *args, **kwargs)

    monkeypatch.setattr(tree_mod.AlbumTree, "create", create)
    write_albums(albums, plans, mode)
    monkeypatch.undo()
    # kill -9 after every entry was made, before the run's closing manifest save
    manifest.write_bytes(on_disk[0])
    assert b'"pending":true' in on_disk[0]
    # the next run re-clustered: new person ids for the same photos, person-0004 gone
    renumbered = [AlbumPlan(p.folder.replace("-000", "-100"), p.person_ids, p.photos, p.faces)
                  for p in plans if p.folder != "person-0004"]
    report = write_albums(albums, renumbered, mode)
    assert report.errors == 0
    write_albums(tmp_path / "clean", renumbered, mode)
    assert _tree(albums) == _tree(tmp_path / "clean"), "stale album of the killed run left"
    assert b"pending" not in manifest.read_bytes()
    assert write_albums(albums, [], mode).errors == 0
    assert _tree(albums) == {}


@pytest.mark.parametrize("mode", ["symlink", "copy", "hardlink"])
def test_entries_of_a_killed_run_are_removed_after_their_originals_left(
    tmp_path: Path, photos, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pending entry must be recognised without its original (deleted while down)."""
    albums = tmp_path / "albums"
    monkeypatch.setattr(writer_mod, "save_manifest", lambda *args, **kwargs: None)
    write_albums(albums, _plans(photos, Labels()), mode)  # killed before its last save
    monkeypatch.undo()
    assert b'"pending":true' in (albums / ".facecluster" / "manifest.json").read_bytes()
    away = tmp_path / "away"
    away.mkdir()
    for i, path in enumerate(photos.values()):
        path.rename(away / f"{i}{path.suffix}")
    report = write_albums(albums, [], mode)
    assert report.errors == 0
    assert _tree(albums) == {}, "entries of the killed run left behind for good"


def test_pictures_of_a_killed_run_are_removed(tmp_path: Path, photos) -> None:
    albums = tmp_path / "albums"
    plans = _plans(photos, Labels())
    write_albums(albums, plans, "symlink")
    signatures = albums / ".thumbnails" / "signatures.json"
    write_pictures(albums, plans[:1])
    saved = signatures.read_bytes()
    write_pictures(albums, plans)
    signatures.write_bytes(saved)  # kill -9 after the pictures, before the signatures
    (albums / ".thumbnails" / "notes.txt").write_text("not a picture: kept")
    write_pictures(albums, plans[:1])
    names = {p.name for p in (albums / ".thumbnails").iterdir()}
    kept = {p.name for p in _pictures(albums, plans[0].folder)}
    assert names == kept | {"notes.txt", "signatures.json"}, "pictures of gone albums left"


def test_spare_copy_round_trips_and_never_follows_a_planted_symlink(tmp_path: Path) -> None:
    from daemon.albums.spare import keep_spare, read_spare

    albums = tmp_path / "albums"
    keep_spare(albums, "identity.json", b"{}")  # no album tree yet: nothing is written
    assert not albums.exists()
    albums.mkdir()
    assert read_spare(albums, "identity.json", 100) is None
    keep_spare(albums, "identity.json", b'{"a": 1}')
    assert read_spare(albums, "identity.json", 100) == b'{"a": 1}'
    with pytest.raises(AlbumError):
        read_spare(albums, "identity.json", 3)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (albums / ".facecluster" / "identity.json").unlink()
    (albums / ".facecluster").rmdir()
    (albums / ".facecluster").symlink_to(elsewhere)
    with pytest.raises(AlbumError):
        keep_spare(albums, "identity.json", b"{}")
    with pytest.raises(AlbumError):
        read_spare(albums, "identity.json", 100)
    assert list(elsewhere.iterdir()) == []
