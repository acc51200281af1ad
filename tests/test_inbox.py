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


def _lying(path: Path, data: bytes, compression: int, factor: float) -> Path:
    """A ZIP whose central directory lies about the first entry's sizes (times factor)."""
    with zipfile.ZipFile(path, "w", compression) as zf:
        zf.writestr("a.jpg", data)
        zf.writestr("b.jpg", b"\xff\xd8 fine \xff\xd9")
    raw = bytearray(path.read_bytes())
    at = raw.index(b"PK\x01\x02")  # the first entry's central directory record
    fields = (20, 24) if compression == zipfile.ZIP_STORED else (20,)
    for offset in fields:  # compressed size, then full size
        size = int.from_bytes(raw[at + offset:at + offset + 4], "little")
        raw[at + offset:at + offset + 4] = int(size * factor).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize(("compression", "factor"), [
    (zipfile.ZIP_STORED, 3),  # reads past the end of the archive: EOFError
    (zipfile.ZIP_DEFLATED, 0.5),  # a cut stream: bad CRC
])
def test_an_entry_whose_header_lies_is_skipped_with_a_reason(
    tmp_path: Path, compression: int, factor: float
) -> None:
    """Issue 21 item 13: "internal error: EOFError" for a size the header lied about."""
    import random

    data = random.Random(1).randbytes(200_000)
    archive = _lying(tmp_path / "lies.zip", data, compression, factor)
    report = import_zip(archive, tmp_path / "photos")
    assert report.photos == 1
    assert (report.folder / "b.jpg").exists() and not (report.folder / "a.jpg").exists()
    assert len(report.skipped) == 1 and report.skipped[0].startswith("a.jpg: damaged")
