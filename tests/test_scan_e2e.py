"""End to end: ``facecluster scan`` on real photos with the real offline engine.

YuNet finds the faces and dlib's ResNet embeds them (SFace cannot be had here); the
photos are the shared set of five known people, group photos and photos without faces.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from daemon.cli.commands import main

pytestmark = pytest.mark.slow

KNOWN = ["alex_lacamoire", "biden", "kit_harington", "obama", "rose_leslie"]


def _write_config(tmp: Path, models_dir: Path, **extra: str) -> Path:
    lines = [
        'watch = ["photos"]',
        'albums_dir = "albums"',
        'state_dir = "state"',
        'labels_file = "labels.toml"',
        "workers = 1",
    ]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    lines += ["[engine]", 'detector = "yunet"', 'embedder = "dlib"', f'models_dir = "{models_dir}"']
    cfg = tmp / "config.toml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def _albums(albums_dir: Path) -> dict[str, set[str]]:
    """Album folder → names of the original photos its entries lead to."""
    out: dict[str, set[str]] = {}
    for d in sorted(albums_dir.iterdir()):
        if d.is_dir() and not d.name.startswith("."):
            out[d.name] = {Path(os.path.realpath(e)).name for e in d.iterdir()}
    return out


def _snapshot(tree: Path) -> dict[str, tuple[int, int, bytes]]:
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(tree.rglob("*"))
        if p.is_file()
    }


@pytest.fixture()
def library(tmp_path: Path, shared_photos: Path, models_dir: Path) -> Path:
    """A photo folder with the known people, a group photo and no-face photos."""
    photos = tmp_path / "photos"
    for person in KNOWN:
        shutil.copytree(shared_photos / "known" / person, photos / "people" / person)
    (photos / "groups").mkdir()
    shutil.copy2(shared_photos / "groups" / "obama_and_biden.jpg", photos / "groups")
    shutil.copytree(shared_photos / "no-faces", photos / "no-faces")
    (photos / "broken").mkdir()
    (photos / "broken" / "truncated.jpg").write_bytes(
        (shared_photos / "known" / "obama" / "obama.jpg").read_bytes()[:2000]
    )
    (photos / "broken" / "not-an-image.jpg").write_text("hello")
    _write_config(tmp_path, models_dir)
    return tmp_path


def _majority_album(albums: dict[str, set[str]], names: set[str]) -> str:
    votes = Counter(a for a, members in albums.items() for n in names if n in members)
    assert votes, f"none of {sorted(names)} is in any album"
    return votes.most_common(1)[0][0]


def test_scan_builds_person_albums(library: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = library / "config.toml"
    before = _snapshot(library / "photos")

    assert main(["--config", str(cfg), "scan"]) == 0
    albums = _albums(library / "albums")

    # Each known person's photos end up together, in an album of their own.
    owner = {}
    for person in KNOWN:
        names = {p.name for p in (library / "photos" / "people" / person).iterdir()}
        album = _majority_album(albums, names)
        missing = names - albums[album]
        assert not missing, f"{person}: {sorted(missing)} not in album {album}"
        owner[person] = album
    assert len(set(owner.values())) == len(KNOWN), owner

    # Unnamed people are announced in a generated file, never in the user's labels.toml.
    suggested = (library / "state" / "people.toml").read_text()
    assert all(f'{album} = ""' in suggested for album in owner.values())
    assert not (library / "labels.toml").exists()

    # The group photo is in both Obama's and Biden's albums; no-face photos in none.
    assert "obama_and_biden.jpg" in albums[owner["obama"]]
    assert "obama_and_biden.jpg" in albums[owner["biden"]]
    no_faces = {p.name for p in (library / "photos" / "no-faces").iterdir()}
    for album, members in albums.items():
        assert not (members & no_faces), f"no-face photo in {album}"

    # Broken files are recorded as failed, with a reason, and did not stop the scan.
    capsys.readouterr()
    assert main(["--config", str(cfg), "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["photos"].get("failed") == 2
    assert status["engine"].endswith("dlib-resnet-v1")

    # A second scan does no work and changes nothing.
    mtimes = {p: p.lstat().st_mtime_ns for p in (library / "albums").rglob("*")}
    assert main(["--config", str(cfg), "scan"]) == 0
    out = capsys.readouterr().out
    assert "0 indexed" in out and "0 entries added, 0 removed" in out
    assert {p: p.lstat().st_mtime_ns for p in (library / "albums").rglob("*")} == mtimes

    # Nothing in the watched folder was modified.
    assert _snapshot(library / "photos") == before


def test_relabel_renames_merges_and_exports(library: Path, capsys) -> None:
    cfg = library / "config.toml"
    assert main(["--config", str(cfg), "scan"]) == 0
    albums = _albums(library / "albums")
    obama = _majority_album(albums, {"obama.jpg", "obama2.jpg", "obama-720p.jpg"})
    kit = _majority_album(albums, {"john1.jpeg", "john2.jpeg"})
    rose = _majority_album(albums, {"img2.jpg"})  # rose_leslie/img2.jpg
    assert obama.startswith("person-") and kit.startswith("person-")

    (library / "labels.toml").write_text(
        f'[people]\n{obama} = "Barack Obama"\n{kit} = "Game of Thrones"\n'
        f'{rose} = "Game of Thrones"\n'
    )
    assert main(["--config", str(cfg), "scan"]) == 0
    after = _albums(library / "albums")
    assert obama not in after and kit not in after and rose not in after
    assert after["Barack Obama"] == albums[obama]
    assert after["Game of Thrones"] == albums[kit] | albums[rose]

    capsys.readouterr()
    assert main(["--config", str(cfg), "people", "--json"]) == 0
    people = json.loads(capsys.readouterr().out)
    named = {p["name"] for p in people if p["name"]}
    assert named == {"Barack Obama", "Game of Thrones"}

    zpath = library / "obama.zip"
    assert main(["--config", str(cfg), "export", "Barack Obama", "--zip", str(zpath)]) == 0
    with zipfile.ZipFile(zpath) as z:
        names = z.namelist()
    assert len(names) == len(after["Barack Obama"])
    assert all("/" not in n and not n.startswith("..") for n in names)

    assert main(["--config", str(cfg), "export", "nobody", "--zip", str(zpath)]) != 0


def test_moved_photo_keeps_its_faces(library: Path, capsys) -> None:
    cfg = library / "config.toml"
    assert main(["--config", str(cfg), "scan"]) == 0
    src = library / "photos" / "people" / "obama" / "obama2.jpg"
    dst = library / "photos" / "moved" / "renamed.jpg"
    dst.parent.mkdir()
    src.rename(dst)  # the test owns this copy; the user's originals are never moved
    capsys.readouterr()
    assert main(["--config", str(cfg), "scan"]) == 0
    out = capsys.readouterr().out
    assert "0 indexed" in out and "1 moved" in out
    albums = _albums(library / "albums")
    album = _majority_album(albums, {"obama.jpg", "obama-720p.jpg"})
    assert "renamed.jpg" in albums[album] and "obama2.jpg" not in albums[album]

    dst.unlink()
    assert main(["--config", str(cfg), "scan"]) == 0
    assert all("renamed.jpg" not in m for m in _albums(library / "albums").values())
