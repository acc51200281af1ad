"""Whether a watched folder is really there: the one answer before photos are forgotten."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daemon.library.roots import MountPoints, root_present, root_watchable


@pytest.fixture()
def mounted(monkeypatch: pytest.MonkeyPatch) -> set[Path]:
    """Paths that ``os.path.ismount`` reports as mount points (a share mounted there)."""
    points: set[Path] = set()
    monkeypatch.setattr(os.path, "ismount", lambda p: Path(p) in points)
    return points


def test_a_folder_with_content_is_present(tmp_path: Path, mounted: set[Path]) -> None:
    (tmp_path / "a.jpg").write_bytes(b"a")
    assert root_present(tmp_path, MountPoints())
    assert root_watchable(tmp_path, MountPoints())


def test_a_missing_folder_is_neither_present_nor_watchable(
    tmp_path: Path, mounted: set[Path]
) -> None:
    assert not root_present(tmp_path / "gone", MountPoints())
    assert not root_watchable(tmp_path / "gone", MountPoints())
    (tmp_path / "file").write_bytes(b"x")
    assert not root_present(tmp_path / "file", MountPoints())


def test_an_empty_plain_folder_is_watchable_but_not_present(
    tmp_path: Path, mounted: set[Path]
) -> None:
    # What a one-shot scan sees of an unmounted share: an empty mount point.
    assert not root_present(tmp_path, MountPoints())
    assert root_watchable(tmp_path, MountPoints())


def test_an_empty_mounted_share_is_not_present(tmp_path: Path, mounted: set[Path]) -> None:
    # A server whose volume went away can serve an empty share; keep the photos.
    mounted.add(tmp_path)
    assert not root_present(tmp_path, MountPoints())
    assert root_watchable(tmp_path, MountPoints())
    (tmp_path / "a.jpg").write_bytes(b"a")
    assert root_present(tmp_path, MountPoints())


def test_a_share_unmounted_from_its_mount_point_is_gone_whatever_it_holds(
    tmp_path: Path, mounted: set[Path]
) -> None:
    (tmp_path / "placeholder.txt").write_bytes(b"not mounted")
    mounts = MountPoints()
    mounted.add(tmp_path)
    assert root_present(tmp_path, mounts)
    mounted.clear()  # unmounted: the folder underneath shows through
    assert not root_present(tmp_path, mounts)
    assert not root_watchable(tmp_path, mounts)
    assert root_present(tmp_path, MountPoints()), "without the memory it is a plain folder"
    mounted.add(tmp_path)
    assert root_present(tmp_path, mounts)


def test_mount_state_is_remembered_per_root(tmp_path: Path, mounted: set[Path]) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    mounts = MountPoints()
    mounted.add(a)
    assert (mounts.state(a), mounts.state(b)) == ("mounted", "folder")
    mounted.clear()
    assert (mounts.state(a), mounts.state(b)) == ("lost", "folder")
