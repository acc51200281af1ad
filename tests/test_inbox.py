"""Importing a ZIP archive of photos, safely."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from daemon.cli.inbox import ArchiveError, import_zip


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return path


def test_photos_unpacked_into_their_own_folder(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    arc = _zip(tmp_path / "trip.zip", {"a.jpg": b"1", "day2/b.PNG": b"2", "notes.txt": b"x"})
    report = import_zip(arc, root)
    assert report.folder == root / "imported" / "trip"
    assert report.photos == 2
    assert (report.folder / "a.jpg").read_bytes() == b"1"
    assert (report.folder / "day2" / "b.PNG").read_bytes() == b"2"
    assert not (report.folder / "notes.txt").exists()
    assert any("notes.txt" in s for s in report.skipped)
    with pytest.raises(ArchiveError, match="already exists"):
        import_zip(arc, root)


def test_entries_cannot_escape(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    arc = _zip(
        tmp_path / "evil.zip",
        {"../../escape.jpg": b"x", "/etc/abs.jpg": b"x", "C:/win.jpg": b"x", "ok.jpg": b"y"},
    )
    report = import_zip(arc, root)
    assert report.photos == 1
    assert not (tmp_path / "escape.jpg").exists()
    assert sorted(p.name for p in tmp_path.rglob("*.jpg")) == ["ok.jpg"]


def test_not_a_zip(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_text("nope")
    with pytest.raises(ArchiveError, match="cannot read"):
        import_zip(bad, tmp_path)
