"""``facecluster review`` on a real scan: the JSON contract, answers, the terminal loop,
and answers that survive ``rebuild``, a deleted store and an engine change.

The five known people and one group photo (Obama and Biden). Albums are compared by the
content of the photos their entries lead to, so moves and re-derivations do not matter.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import pytest

from daemon.cli import main
from daemon.people.labels import load_labels
from daemon.store import Store

pytestmark = pytest.mark.slow

KNOWN = ["alex_lacamoire", "biden", "kit_harington", "obama", "rose_leslie"]


def _config(root: Path, detector: str = "yunet") -> Path:
    cfg = root / "config.toml"
    cfg.write_text(
        'watch = ["photos"]\nalbums_dir = "albums"\nstate_dir = "state"\n'
        'labels_file = "labels.toml"\nworkers = 1\n'
        f'[engine]\ndetector = "{detector}"\nembedder = "dlib"\nmodels_dir = "models"\n'
    )
    return cfg


@pytest.fixture()
def lib(tmp_path: Path, shared_photos: Path, yunet_file: Path) -> Path:
    """A scanned library of its own (the store keeps absolute paths: no copies)."""
    shutil.copytree(shared_photos / "known", tmp_path / "photos")  # the five people
    # Two group photos: Obama with Biden, and a collage of four bald actors: faces that
    # nobody was given, some close enough to a known person to be worth a question.
    groups = {"obama_and_biden.jpg", "bald_guys.jpg"}
    shutil.copytree(shared_photos / "groups", tmp_path / "photos" / "groups",
                    ignore=lambda _, names: [n for n in names if n not in groups])
    shutil.copytree(yunet_file.parent, tmp_path / "models",
                    ignore=lambda _, names: [n for n in names if n != yunet_file.name])
    assert main(["--config", str(_config(tmp_path)), "scan"]) == 0
    assert {p.name for p in (tmp_path / "photos").iterdir()} == {*KNOWN, "groups"}
    return tmp_path


def _run(root: Path, capsys, *args: str) -> str:
    capsys.readouterr()
    assert main(["--config", str(root / "config.toml"), *args]) == 0
    return capsys.readouterr().out


def _questions(root: Path, capsys, *extra: str) -> list[dict]:
    return json.loads(_run(root, capsys, "review", "--json", *extra))["questions"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _albums(root: Path) -> dict[str, set[str]]:
    """Album -> the original photos (``person/file`` of the shared copy) it shows."""
    by_hash = {_digest(p): f"{p.parent.name}/{p.name}"
               for p in (root / "photos").rglob("*") if p.is_file()}
    out = {}
    for d in (root / "albums").iterdir():
        if d.is_dir() and not d.name.startswith("."):
            out[d.name] = {by_hash.get(_digest(Path(os.path.realpath(e))), e.name)
                           for e in d.iterdir()}
    return out


def _album_of(albums: dict[str, set[str]], photo: str) -> str | None:
    """The album of a photo of one person."""
    found = [a for a, members in albums.items() if photo in members]
    assert len(found) <= 1, found
    return found[0] if found else None


def test_json_contract(lib: Path, capsys) -> None:
    data = json.loads(_run(lib, capsys, "review", "--json", "--limit", "4"))
    assert list(data) == ["questions"]
    questions = data["questions"]
    assert 1 <= len(questions) <= 4
    for q in questions:
        assert list(q) == ["id", "a", "b"]
        assert q["id"].count("+") == 1
        for side in (q["a"], q["b"]):
            assert list(side) == ["person", "faces"]
            assert side["person"] is None or side["person"].startswith("person-")
            assert 1 <= len(side["faces"]) <= 6
            for f in side["faces"]:
                assert list(f) == ["face", "photo", "box"]
                assert f["face"].startswith("face-")
                photo = Path(f["photo"])
                assert photo.is_file() and photo.is_relative_to(lib / "photos")
                assert len(f["box"]) == 4 and all(isinstance(x, int) for x in f["box"])
                assert f["box"][2] > 20 and f["box"][3] > 20
        assert q["a"]["person"] is not None  # one side at least is a person
    assert len(_questions(lib, capsys, "--limit", "1")) == 1
    assert _questions(lib, capsys, "--limit", "0") == []


def test_answers_apply_at_the_next_scan_without_reindexing(lib: Path, capsys) -> None:
    albums = _albums(lib)
    kit, rose = _album_of(albums, "kit_harington/john1.jpeg"), _album_of(
        albums, "rose_leslie/img1.jpg")
    assert kit != rose
    qid = "+".join(sorted([kit, rose]))
    out = _run(lib, capsys, "review", "answer", qid, "yes")
    assert "yes" in out
    assert qid not in {q["id"] for q in _questions(lib, capsys, "--limit", "100")}
    with Store.open(lib / "state") as store:
        before = {p.path: p.updated_at for p in store.iter_photos()}
    _run(lib, capsys, "scan")
    with Store.open(lib / "state") as store:
        assert {p.path: p.updated_at for p in store.iter_photos()} == before  # no re-index
    albums = _albums(lib)
    both = _album_of(albums, "kit_harington/john1.jpeg")
    assert albums[both] >= {"kit_harington/john1.jpeg", "kit_harington/john2.jpeg",
                            "rose_leslie/img1.jpg", "rose_leslie/img2.jpg"}
    gone = ({kit, rose} - {both}).pop()
    with Store.open(lib / "state") as store:
        retired = {p.id: p.retired for p in store.people()}
    assert retired[int(gone.removeprefix("person-"))]  # empty now: retired, never reused
    assert not retired[int(both.removeprefix("person-"))]
    assert qid not in {q["id"] for q in _questions(lib, capsys, "--limit", "100")}


def test_the_terminal_loop_asks_writes_a_picture_and_records_keys(
        lib: Path, capsys, monkeypatch) -> None:
    first, second = _questions(lib, capsys, "--limit", "2")
    # q quits at once; end of input too; nothing is recorded.
    monkeypatch.setattr("sys.stdin", io.StringIO("q\n"))
    assert "0 answer(s)" in _run(lib, capsys, "review")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert "0 answer(s)" in _run(lib, capsys, "review")
    assert not (lib / "labels.toml").exists()
    monkeypatch.setattr("sys.stdin", io.StringIO("what\nn\ns\n"))
    out = _run(lib, capsys, "review", "--limit", "2")
    picture = lib / "state" / "review" / "question.jpg"
    assert f"picture: {picture}" in out and picture.stat().st_size > 1000
    assert "'what'?" in out and "1 answer(s) recorded" in out and "1 not sure" in out
    labels = load_labels(lib / "labels.toml")
    refs = first["id"].split("+")
    holder = int(refs[0].removeprefix("person-"))
    assert refs[1] in labels.label(holder).different
    unsure = json.loads((lib / "state" / "review.json").read_text())["unsure"]
    assert second["id"] in unsure
    left = {q["id"] for q in _questions(lib, capsys, "--limit", "100")}
    assert first["id"] not in left and second["id"] not in left


def test_a_bad_question_id_or_answer_is_one_line(lib: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["--config", str(lib / "config.toml"), "review", "answer", "bob", "yes"]) == 1
    assert "not a question id" in capsys.readouterr().err
    assert not (lib / "labels.toml").exists()


@pytest.fixture()
def answered(lib: Path, capsys) -> dict:
    """Kit and Rose answered "the same", Obama's face in the group photo "not Obama"."""
    albums = _albums(lib)
    kit, rose = _album_of(albums, "kit_harington/john1.jpeg"), _album_of(
        albums, "rose_leslie/img1.jpg")
    obama = _album_of(albums, "obama/obama.jpg")
    assert "groups/obama_and_biden.jpg" in albums[obama]
    with Store.open(lib / "state") as store:
        group = [f for f in store.faces(person_id=int(obama.removeprefix("person-")))
                 if f.path.name == "obama_and_biden.jpg"]
    assert len(group) == 1
    _run(lib, capsys, "review", "answer", "+".join(sorted([kit, rose])), "yes")
    _run(lib, capsys, "review", "answer", f"{obama}+face-{group[0].id}", "no")
    _run(lib, capsys, "scan")
    _assert_answers_obeyed(lib)
    return {"root": lib}


def _assert_answers_obeyed(root: Path) -> None:
    albums = _albums(root)
    together = _album_of(albums, "kit_harington/john1.jpeg")
    assert together is not None
    assert {"kit_harington/john2.jpeg", "rose_leslie/img1.jpg",
            "rose_leslie/img2.jpg"} <= albums[together]
    obama = _album_of(albums, "obama/obama.jpg")
    assert obama is not None and "groups/obama_and_biden.jpg" not in albums[obama]
    assert {"obama/obama-720p.jpg", "obama/obama_small.jpg"} <= albums[obama]


def test_answers_survive_rebuild(answered: dict, capsys) -> None:
    _run(answered["root"], capsys, "rebuild")
    _assert_answers_obeyed(answered["root"])


def test_answers_survive_a_deleted_state_folder(answered: dict, capsys) -> None:
    shutil.rmtree(answered["root"] / "state")
    _run(answered["root"], capsys, "scan")
    _assert_answers_obeyed(answered["root"])


def test_answers_survive_an_engine_change(answered: dict, capsys) -> None:
    _config(answered["root"], detector="dlib-hog")
    _run(answered["root"], capsys, "scan")
    _assert_answers_obeyed(answered["root"])


def test_split_offers_the_parts_and_no_makes_a_person_of_its_own(lib: Path, capsys,
                                                                  monkeypatch) -> None:
    albums = _albums(lib)
    kit, rose = _album_of(albums, "kit_harington/john1.jpeg"), _album_of(
        albums, "rose_leslie/img1.jpg")
    _run(lib, capsys, "review", "answer", "+".join(sorted([kit, rose])), "yes")
    _run(lib, capsys, "scan")
    both = _album_of(_albums(lib), "kit_harington/john1.jpeg")
    parts = json.loads(_run(lib, capsys, "split", both, "--json"))["parts"]
    assert sorted(p["size"] for p in parts) == [2, 2]
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    out = _run(lib, capsys, "split", both)
    assert "2 parts" in out and "1 part(s) answered" in out
    _run(lib, capsys, "scan")
    albums = _albums(lib)
    assert _album_of(albums, "kit_harington/john1.jpeg") == _album_of(
        albums, "kit_harington/john2.jpeg")
    assert _album_of(albums, "rose_leslie/img1.jpg") == _album_of(albums, "rose_leslie/img2.jpg")
    assert _album_of(albums, "kit_harington/john1.jpeg") != _album_of(
        albums, "rose_leslie/img1.jpg")
    assert _album_of(albums, "rose_leslie/img1.jpg") is not None


def test_a_birth_date_keeps_earlier_photos_out_and_undated_ones_in(lib: Path, capsys) -> None:
    from daemon.people import naming

    obama = _album_of(_albums(lib), "obama/obama.jpg")
    assert {"obama/obama2.jpg", "obama/obama.jpg"} <= _albums(lib)[obama]
    # obama2.jpg's EXIF says 2009-09-09, obama.jpg's 2012-12-06; the rest have no date.
    naming.set_born(lib / "labels.toml", int(obama.removeprefix("person-")), "2010-01")
    _run(lib, capsys, "scan")
    album = _albums(lib)[obama]
    assert "obama/obama2.jpg" not in album
    assert {"obama/obama.jpg", "obama/obama-720p.jpg", "obama/obama_small.jpg"} <= album
    dates = json.loads((lib / "state" / "photo-dates.json").read_text())
    assert "2009-09-09" in dates.values() and "" in dates.values()


def test_an_answer_naming_a_person_the_store_never_had_does_not_break_a_scan(
        lib: Path, capsys) -> None:
    from daemon.people import naming

    obama = _album_of(_albums(lib), "obama/obama.jpg")
    with Store.open(lib / "state") as store:
        face = next(f for f in store.faces(person_id=int(obama.removeprefix("person-"))))
    naming.answer(lib / "labels.toml", 4321, f"face-{face.id}", same=True)
    naming.answer(lib / "labels.toml", 4321, obama, same=True)
    _run(lib, capsys, "scan")
    albums = _albums(lib)
    # An id nobody has never takes faces (a typo must not use up numbers): Obama stays.
    assert "person-4321" not in albums
    assert {"obama/obama.jpg", "obama/obama-720p.jpg"} <= albums[obama]
    with Store.open(lib / "state") as store:
        assert 4321 not in {p.id for p in store.people()}
