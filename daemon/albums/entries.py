"""Making one album entry on disk: a relative symlink, a hardlink or a copy of an original.

A replaced entry is made under a temporary name and renamed over the old one, so the old
entry stays in place until the new one is complete. Copies keep the original's mtime and
are written through :func:`daemon.fsutil.atomic_writer`. A hardlink that the file system
refuses raises :class:`NoHardlink`, for the caller to fall back to a copy.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from daemon.albums.dirs import unlink_quietly
from daemon.fsutil import atomic_writer, temp_name

# Errors of os.link that mean "no hardlink here", not "this entry failed".
_NO_HARDLINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}


class NoHardlink(Exception):
    """os.link is impossible here (other file system, not permitted); copy instead."""


def copy_into(dir_fd: int, name: str, source: Path) -> None:
    """Copy ``source`` to ``name`` atomically, keeping its mtime."""
    with open(source, "rb") as src, atomic_writer(name, dir_fd=dir_fd) as dst:
        st = os.fstat(src.fileno())
        shutil.copyfileobj(src, dst, 1 << 20)
        dst.flush()
        os.utime(dst.fileno(), ns=(st.st_atime_ns, st.st_mtime_ns))


def _put(dir_fd: int, name: str, replace: bool, make: Callable[[str], None]) -> None:
    """Create an entry with ``make(target_name)``; when replacing, via a temp name + rename
    so the old entry stays in place until the new one is complete."""
    target = temp_name() if replace else name
    make(target)
    if replace:
        try:
            os.rename(target, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            unlink_quietly(dir_fd, target)
            raise


def link_into(dir_fd: int, name: str, source: Path, replace: bool) -> None:
    """Hardlink ``source`` as ``name``; raises :class:`NoHardlink` where that is impossible."""

    def make(target: str) -> None:
        try:
            os.link(source, target, dst_dir_fd=dir_fd, follow_symlinks=True)
        except OSError as e:
            if e.errno in _NO_HARDLINK:
                raise NoHardlink(e.strerror) from e
            raise

    _put(dir_fd, name, replace, make)


def symlink_into(dir_fd: int, name: str, link_target: str, replace: bool) -> None:
    """Make ``name`` a symlink to ``link_target``."""
    _put(dir_fd, name, replace, lambda target: os.symlink(link_target, target, dir_fd=dir_fd))
