"""A spare copy of a small state file in the album tree's ``.facecluster`` folder.

Why: the identity anchors (which faces the ids in labels.toml stand for) live in the
state folder, next to the store. A user who deletes that folder to start afresh keeps
labels.toml and usually the album tree; with a spare copy here the names still land on
the same humans. Reads and writes go through directory descriptors, like everything
else in the album tree, so a planted symlink is never followed.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from daemon.albums.dirs import AlbumError, open_dir, open_root
from daemon.albums.manifest import STATE_DIR
from daemon.fsutil import atomic_write

_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def keep_spare(albums_dir: Path, name: str, data: bytes) -> None:
    """Write ``data`` as ``albums_dir/.facecluster/name``; nothing when there is no album
    tree yet. Raises :class:`AlbumError` or OSError."""
    if not albums_dir.is_dir():
        return
    root = open_root(albums_dir)
    try:
        fd, _ = open_dir(root, STATE_DIR, create=True)
        try:
            atomic_write(name, data, dir_fd=fd)
        finally:
            os.close(fd)
    finally:
        os.close(root)


def read_spare(albums_dir: Path, name: str, max_bytes: int) -> bytes | None:
    """The spare copy of ``name``, or None if there is none. Raises :class:`AlbumError`
    (a symlink, or larger than ``max_bytes``) or OSError."""
    try:
        root = open_root(albums_dir)
    except AlbumError:
        return None  # no album tree at all
    try:
        try:
            fd, _ = open_dir(root, STATE_DIR)
        except FileNotFoundError:
            return None
        try:
            try:
                file_fd = os.open(name, _READ_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                return None
            with open(file_fd, "rb") as f:
                data = f.read(max_bytes + 1)
        finally:
            os.close(fd)
    finally:
        with contextlib.suppress(OSError):
            os.close(root)
    if len(data) > max_bytes:
        raise AlbumError(f"{albums_dir / STATE_DIR / name} is larger than {max_bytes} bytes")
    return data
