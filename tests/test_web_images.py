"""The page's picture cache: crops from a reduced decode, kept under a size by last use."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from daemon.store import FaceRecord
from daemon.web.images import CROP_SIZE, FaceImages, NoPicture, cache_size, prune


def _photo(tmp_path: Path) -> Path:
    rng = np.random.default_rng(5)
    path = tmp_path / "p.jpg"
    cv2.imwrite(str(path), rng.integers(0, 255, (600, 800, 3), dtype=np.uint8))
    return path


def _face(i: int, path: Path) -> FaceRecord:
    return FaceRecord(i, 1, path, (100.0 + i, 100.0, 200.0, 200.0), (), 0.99, "e", None)


def test_prune_removes_the_least_recently_used_first(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    (root / "faces").mkdir(parents=True)
    for i in range(5):
        f = root / "faces" / f"{i}.jpg"
        f.write_bytes(b"x" * 100)
        os.utime(f, (1000 + i, 1000 + i))
    os.utime(root / "faces" / "0.jpg", (2000, 2000))  # the oldest was just looked at
    assert prune(root, 300) == 300
    assert sorted(p.name for p in (root / "faces").iterdir()) == ["0.jpg", "3.jpg", "4.jpg"]


def test_the_cache_stays_under_its_size_and_keeps_what_is_shown(tmp_path: Path) -> None:
    path = _photo(tmp_path)
    images = FaceImages(tmp_path / "state", 10**8)
    first = images.crop(_face(0, path), str(path))
    assert cv2.imdecode(np.frombuffer(first, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (
        CROP_SIZE, CROP_SIZE)
    images.max_bytes = 4 * len(first)
    crop0 = images._crop_path(0)
    for i in range(1, 12):
        os.utime(crop0, (0, 0))  # make 0 the oldest...
        assert images.crop(_face(0, path), str(path)) == first  # ...then show it again
        images.crop(_face(i, path), str(path))
        assert cache_size(images.root) <= images.max_bytes
    assert crop0.exists()  # shown all along: never pruned
    assert not images._crop_path(1).exists()  # not shown since: pruned


def test_a_symlink_planted_in_the_cache_is_never_followed(tmp_path: Path) -> None:
    path = _photo(tmp_path)
    secret = tmp_path / "private.txt"
    secret.write_bytes(b"private data")
    secret.chmod(0o600)
    os.utime(secret, (1000, 1000))
    images = FaceImages(tmp_path / "state", 10**8)
    good = images.crop(_face(1, path), str(path))
    cached = images._crop_path(1)
    cached.unlink()
    cached.symlink_to(secret)  # the cache file swapped for a link to a private file
    assert images.crop(_face(1, path), str(path)) == good  # redrawn, not the link's target
    assert secret.read_bytes() == b"private data" and secret.stat().st_mtime == 1000
    assert not cached.is_symlink()  # the redrawn crop replaced the link itself
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = cached.parent
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()
    folder.symlink_to(outside, target_is_directory=True)  # a whole folder swapped
    (outside / "1.jpg").symlink_to(secret)
    assert images.crop(_face(1, path), str(path)) == good
    assert images.crop(_face(2, path), str(path)) != good  # drawn, only not cached
    assert sorted(p.name for p in outside.iterdir()) == ["1.jpg"]
    assert secret.read_bytes() == b"private data" and secret.stat().st_mtime == 1000
    images.max_bytes = 1
    other = FaceRecord(1001, 1, path, (100.0, 100.0, 200.0, 200.0), (), 0.99, "e", None)
    images.crop(other, str(path))  # prunes the cache: never through the link
    assert secret.exists() and (outside / "1.jpg").is_symlink()


def test_a_stored_crop_is_shown_without_reading_the_photo(tmp_path: Path) -> None:
    images = FaceImages(tmp_path / "state", 10**8)
    blue = cv2.imencode(".jpg", np.full((256, 256, 3), (250, 0, 0), np.uint8))[1].tobytes()
    gone = tmp_path / "gone.jpg"  # no photo at all: only the crop store can draw it
    got = cv2.imdecode(np.frombuffer(images.crop(_face(1, gone), str(gone), blue), np.uint8),
                       cv2.IMREAD_COLOR)
    assert got.shape[:2] == (CROP_SIZE, CROP_SIZE)
    assert np.abs(got.astype(float) - (250, 0, 0)).mean() < 6
    montage = images.montage([(_face(2, gone), str(gone))], {2: blue})
    assert cv2.imdecode(np.frombuffer(montage, np.uint8), cv2.IMREAD_COLOR) is not None
    with pytest.raises(NoPicture):  # neither crop nor photo: no picture, no crash
        images.crop(_face(3, gone), str(gone))
