"""Folder-safe file operations in the album tree, all through directory descriptors.

Every operation works relative to an open directory, and a directory is opened with
``O_NOFOLLOW``: an album folder, or ``.facecluster``, that is a symlink (planted to point
at ``/etc``, say) is refused with :class:`AlbumError`, never followed.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

import structlog

from daemon.fsutil import TMP_PREFIX

log = structlog.get_logger(__name__)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class AlbumError(Exception):
    """The album tree cannot be written or read safely (message says why and where)."""


def open_root(albums_dir: Path, error: type[AlbumError] = AlbumError) -> int:
    """Open the albums dir itself as a directory descriptor; ``error`` says why it cannot."""
    try:
        return os.open(albums_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise error(f"cannot use albums folder {albums_dir}: {e.strerror or e}") from e


def open_dir(parent_fd: int, name: str, *, create: bool = False,
             mode: int = 0o755) -> tuple[int, bool]:
    """Open directory ``name`` under ``parent_fd`` without following a symlink.

    Returns (fd, created). Raises :class:`AlbumError` if ``name`` is a symlink or not a
    directory, FileNotFoundError if it is missing and ``create`` is false.
    """
    try:
        return _open_dir_fd(parent_fd, name), False
    except FileNotFoundError:
        if not create:
            raise
    created = False
    try:
        os.mkdir(name, mode, dir_fd=parent_fd)
        created = True
    except FileExistsError:
        pass  # made meanwhile; the open below checks what it is
    return _open_dir_fd(parent_fd, name), created


def _open_dir_fd(parent_fd: int, name: str) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise AlbumError(f"{name!r} is a symlink or not a folder; refusing to use it") from e
        raise


def exists_at(dir_fd: int, name: str) -> bool:
    """Whether ``name`` exists in ``dir_fd`` (as anything, a dangling symlink included)."""
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def unlink_quietly(dir_fd: int, name: str) -> None:
    """Remove ``name`` from ``dir_fd`` if it can be; for cleaning up after a failure."""
    with contextlib.suppress(OSError):
        os.unlink(name, dir_fd=dir_fd)


def clear_leftovers(dir_fd: int) -> int:
    """Remove temporary files a killed write left in ``dir_fd``; returns how many.

    Safe because writes into the albums tree are single-writer (the service holds the
    state lock), so a temporary file seen here is never one being written right now.
    """
    try:
        names = [n for n in os.listdir(dir_fd) if n.startswith(TMP_PREFIX)]
    except OSError:
        return 0
    cleared = 0
    for name in names:
        try:
            os.unlink(name, dir_fd=dir_fd)
            cleared += 1
        except FileNotFoundError:
            pass
        except OSError as e:  # a directory of that name, say: not ours to remove
            log.warning("album_leftover_kept", name=name, error=e.strerror)
    if cleared:
        log.info("album_leftovers_cleared", files=cleared)
    return cleared
