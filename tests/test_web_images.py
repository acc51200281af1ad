"""The page's picture cache: crops from a reduced decode, kept under a size by last use."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from daemon.store import FaceRecord
from daemon.web.images import CROP_SIZE, FaceImages, cache_size, prune


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
