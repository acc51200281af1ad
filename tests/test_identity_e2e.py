"""Names stay on the right person through whatever the store goes through (issue 10).

Real photos of five known people and a group photo; the user names, merges, hides and
excludes (a photo and one face of the group photo), then the store is rebuilt, deleted,
corrupted, re-derived by another engine, or re-clustered with photos added and moved.
Each time the album tree must show the same humans under the same names: albums are
compared by the content of the photos their entries lead to, so moves do not matter.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from daemon.cli.commands import main
from daemon.store import Store

pytestmark = pytest.mark.slow

FIRST = ["kit_harington", "rose_leslie"]  # scanned first, so their ids come first
LATER = ["alex_lacamoire", "biden", "obama"]


def _original(path: Path) -> str:
    """The photo's shared original, as ``folder/name``: found by content, so moves and
    renames in the library do not change it."""
    data = path.read_bytes()
    return _ORIGINALS.get(hashlib.sha256(data).hexdigest(), f"? {path.name}")


_ORIGINALS: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _originals(shared_photos: Path) -> None:
    if not _ORIGINALS:
        for p in shared_photos.rglob("*"):
            if p.is_file():
                digest = hashlib.sha256(p.read_bytes()).hexdigest()
                _ORIGINALS[digest] = f"{p.parent.name}/{p.name}"


def _write_config(root: Path, models_dir: Path, detector: str) -> Path:
    cfg = root / "config.toml"
    cfg.write_text(
        'watch = ["photos"]\nalbums_dir = "albums"\nstate_dir = "state"\n'
        'labels_file = "labels.toml"\nworkers = 1\n'
        f'[engine]\ndetector = "{detector}"\nembedder = "dlib"\nmodels_dir = "{models_dir}"\n'
    )
    return cfg


def _albums(root: Path) -> dict[str, set[str]]:
    """Album folder -> the originals its entries lead to (see :func:`_original`)."""
    out: dict[str, set[str]] = {}
    for d in sorted((root / "albums").iterdir()):
        if d.is_dir() and not d.name.startswith("."):
            out[d.name] = {_original(Path(os.path.realpath(e))) for e in d.iterdir()}
    return out


def _hashes(folder: Path) -> set[str]:
    return {_original(p) for p in folder.iterdir() if p.is_file()}


def _owner(albums: dict[str, set[str]], photos: set[str]) -> str:
    """The one album that holds all of ``photos``."""
    found = [a for a, members in albums.items() if photos <= members]
    assert len(found) == 1, (sorted(albums), found)
    return found[0]


def _scan(cfg: Path) -> None:
    assert main(["--config", str(cfg), "scan"]) == 0


@pytest.fixture()
def named(tmp_path: Path, shared_photos: Path, models_dir: Path, request) -> dict:
    """A library scanned in two rounds and then named, merged, hidden and excluded.

    Returns the expectations: the album tree of the named people and the photos of the
    hidden one. The engine is the test's ``detector`` parameter (default YuNet).
    """
    detector = getattr(request, "param", "yunet")
    cfg = _write_config(tmp_path, models_dir, detector)
    people = tmp_path / "photos" / "people"
    for person in FIRST:
        shutil.copytree(shared_photos / "known" / person, people / person)
    _scan(cfg)
    for person in LATER:
        shutil.copytree(shared_photos / "known" / person, people / person)
    (tmp_path / "photos" / "groups").mkdir()
    group = tmp_path / "photos" / "groups" / "obama_and_biden.jpg"
    shutil.copy2(shared_photos / "groups" / "obama_and_biden.jpg", group)
    _scan(cfg)

    albums = _albums(tmp_path)
    of = {p: _hashes(people / p) for p in FIRST + LATER}
    ids = {p: _owner(albums, of[p]) for p in of}
    assert len(set(ids.values())) == len(ids), ids
    assert all(a.startswith("person-") for a in ids.values())
    with Store.open(tmp_path / "state") as store:
        obama_id = int(ids["obama"].removeprefix("person-"))
        in_group = [f.id for f in store.faces(person_id=obama_id) if f.path == group]
    assert len(in_group) == 1, "Obama's face in the group photo"
    (tmp_path / "labels.toml").write_text(
        "# my people\n[people]\n"
        f'{ids["obama"]} = {{ name = "Barack Obama", exclude = ["people/obama/obama2.jpg", '
        f'"face-{in_group[0]}"] }}\n'
        f'{ids["biden"]} = "Joe Biden"\n'
        f'{ids["kit_harington"]} = "Game of Thrones"\n'
        f'{ids["rose_leslie"]} = "Game of Thrones"\n'
        f'{ids["alex_lacamoire"]} = {{ hide = true }}\n'
    )
    _scan(cfg)

    group_hash = _original(group)
    expected = {
        "Barack Obama": of["obama"] - {_original(people / "obama" / "obama2.jpg")},
        "Joe Biden": of["biden"] | {group_hash},
        "Game of Thrones": of["kit_harington"] | of["rose_leslie"],
    }
    albums = _albums(tmp_path)
    assert {a: albums.get(a) for a in expected} == expected
    assert not any(of["alex_lacamoire"] & m for m in albums.values())
    return {"root": tmp_path, "cfg": cfg, "expected": expected, "hidden": of["alex_lacamoire"],
            "models": models_dir}


def _assert_same_people(fx: dict) -> None:
    albums = _albums(fx["root"])
    assert {a: albums.get(a) for a in fx["expected"]} == fx["expected"]
    hidden = [a for a, members in albums.items() if fx["hidden"] & members]
    assert not hidden, f"the hidden person shows up in {hidden}"


def _delete_store(state: Path) -> None:
    for f in [*state.glob("facecluster.sqlite3*"), *state.glob("vectors*")]:
        f.unlink()


def test_names_survive_rebuild(named: dict) -> None:
    assert main(["--config", str(named["cfg"]), "rebuild"]) == 0
    _assert_same_people(named)


def test_names_survive_rebuild_of_a_corrupt_store(named: dict) -> None:
    db = named["root"] / "state" / "facecluster.sqlite3"
    db.write_bytes(b"this is not a database" * 100)
    for f in named["root"].glob("state/facecluster.sqlite3-*"):
        f.unlink()
    assert main(["--config", str(named["cfg"]), "rebuild"]) == 0
    _assert_same_people(named)


def test_names_survive_a_deleted_store(named: dict) -> None:
    _delete_store(named["root"] / "state")
    _scan(named["cfg"])
    _assert_same_people(named)


def test_names_survive_a_deleted_state_folder(named: dict) -> None:
    # Store, vector caches and state/identity.json all gone: the album tree's spare copy
    # of the anchors gives the names back to the same humans.
    shutil.rmtree(named["root"] / "state")
    _scan(named["cfg"])
    _assert_same_people(named)
    assert (named["root"] / "state" / "identity.json").is_file()


@pytest.mark.parametrize("named", ["dlib-hog"], indirect=True)
def test_names_survive_an_engine_change(named: dict, capsys) -> None:
    _write_config(named["root"], named["models"], "yunet")
    _scan(named["cfg"])
    _assert_same_people(named)
    capsys.readouterr()
    assert main(["--config", str(named["cfg"]), "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["engine"].startswith("yunet")
    assert status["identity_conflicts"] == []


def test_names_survive_new_photos_and_moves(named: dict, shared_photos: Path) -> None:
    root = named["root"]
    photos = root / "photos"
    # New photos of named people and strangers; an excluded photo moved and renamed; a
    # folder renamed.
    for name in ("kit_with_rose.jpg", "two_people.jpg", "couple.jpg"):
        shutil.copy2(shared_photos / "groups" / name, photos / "groups" / name)
    (photos / "archive").mkdir()
    (photos / "people" / "obama" / "obama2.jpg").rename(photos / "archive" / "barack-2.jpg")
    (photos / "people" / "biden").rename(photos / "people" / "joe")
    _scan(named["cfg"])

    albums = _albums(root)
    expected = dict(named["expected"])
    expected["Game of Thrones"] = expected["Game of Thrones"] | {"groups/kit_with_rose.jpg"}
    for name in ("Barack Obama", "Joe Biden"):  # two_people.jpg shows both
        expected[name] = expected[name] | {"groups/two_people.jpg"}
    assert {a: albums.get(a) for a in expected} == expected
    assert not [a for a, m in albums.items() if named["hidden"] & m]
