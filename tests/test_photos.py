"""Which files count as photos: the rules shared by scan and watcher."""

from __future__ import annotations

from pathlib import Path

from daemon.config import from_dict
from daemon.library.photos import is_ignored, is_photo, walk_photos


def _cfg(tmp_path: Path):
    return from_dict(
        {"watch": ["photos"], "albums_dir": "photos/albums", "state_dir": "photos/.state"},
        tmp_path,
    )


def test_ignored_names(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    root = tmp_path / "photos"
    for rel in [
        "albums/person-0001/a.jpg",
        ".state/x.jpg",
        "2020/@eaDir/IMG_1.jpg/SYNOPHOTO_THUMB_XL.jpg",
        "#recycle/old.jpg",
        ".@__thumb/a.jpg",
        "2020/.hidden.jpg",
        "2020/._IMG_1.jpg",
        "2020/IMG_1.jpg.part",
        "2020/IMG_1.jpg~",
        "2020/IMG_1.JPG.tmp",
    ]:
        assert is_ignored(root / rel, cfg), rel
    assert not is_ignored(root / "2020" / "IMG_1.JPG", cfg)
    assert is_photo(root / "2020" / "IMG_1.JPG", cfg)
    assert not is_photo(root / "2020" / "notes.txt", cfg)


def test_walk_finds_photos_and_skips_the_rest(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    root = tmp_path / "photos"
    wanted = [root / "a.jpg", root / "sub" / "b.png", root / "sub" / "deep" / "c.jpeg"]
    unwanted = [root / "@eaDir" / "a.jpg", root / "albums" / "p" / "a.jpg", root / "x.txt"]
    for p in wanted + unwanted:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    (root / "sub" / "loop").symlink_to(root)  # a directory link loop must not hang the walk
    assert list(walk_photos([root], cfg)) == sorted(wanted, key=lambda p: p.parts)


def test_phone_and_camera_formats_are_photos_and_videos_are_not(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    root = tmp_path / "photos"
    for name in ["IMG_1.HEIC", "a.heif", "b.avif", "c.CR2", "d.cr3", "e.NEF", "f.arw", "g.DNG",
                 "h.raf", "i.orf", "j.RW2", "k.pef"]:
        assert is_photo(root / name, cfg), name
    for name in ["IMG_1.MOV", "clip.mp4", "IMG_1.AAE", "x.xmp"]:
        assert not is_photo(root / name, cfg), name
