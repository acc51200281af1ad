"""Replacing a file so that a reader sees the old bytes or the new ones, never a mix.

Every file facecluster writes (status, manifests, thumbnails, album copies, model files,
ZIP exports, ``people.toml``) goes through :func:`atomic_writer`: a temporary name beside
the target, ``O_EXCL | O_NOFOLLOW`` so a planted link is never written through, an
optional fsync, then a rename. A failure anywhere removes the temporary file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

# A killed write leaves a file with this prefix; the album writer clears them on its next
# run (it is the only writer of its tree), and the photo filter ignores them.
TMP_PREFIX = ".facecluster-tmp-"

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def temp_name() -> str:
    """A fresh temporary file name, recognisable by :data:`TMP_PREFIX`."""
    return TMP_PREFIX + secrets.token_hex(8)


@contextlib.contextmanager
def atomic_writer(
    path: str | os.PathLike[str],
    *,
    dir_fd: int | None = None,
    durable: bool = True,
    mode: int = 0o644,
) -> Iterator[BinaryIO]:
    """Yield a binary file whose contents replace ``path`` when the block ends cleanly.

    ``dir_fd`` makes ``path`` relative to an open directory (the album writer works
    through directory descriptors so a swapped-in symlink cannot redirect it).
    ``durable=False`` skips the fsync, for files that only describe the present and are
    rewritten every few seconds (an fsync each time would only wear out an SD card).
    """
    head, _ = os.path.split(os.fspath(path))
    tmp = os.path.join(head, temp_name())
    fd = os.open(tmp, _CREATE, mode, dir_fd=dir_fd)
    try:
        with open(fd, "wb") as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def atomic_write(
    path: str | os.PathLike[str],
    data: bytes,
    *,
    dir_fd: int | None = None,
    durable: bool = True,
) -> None:
    """Replace ``path`` with ``data`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path, dir_fd=dir_fd, durable=durable) as f:
        f.write(data)


class LockTimeout(OSError):
    """Another process held a file lock for longer than we were willing to wait."""


@contextlib.contextmanager
def file_lock(
    path: str | os.PathLike[str],
    *,
    wait: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the block.

    For files that are replaced by a rename the lock must be on a file of its own: a
    lock on the replaced file would be on the old inode, which a second writer no longer
    opens. ``flock`` locks die with their holder, so a killed writer never blocks the
    next one; a live one is waited for up to ``wait`` seconds, then :class:`LockTimeout`.
    """
    flags = os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, os.O_RDWR | flags, 0o666)
    except PermissionError:
        # Made by another user (root's CLI, the service's account): reading is enough
        # for flock on a local file system.
        fd = os.open(path, os.O_RDONLY | flags)
    try:
        deadline = clock() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if clock() >= deadline:
                    raise LockTimeout(f"{path} is held by another process") from None
                sleep(0.005)
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the lock


def remove_stale_temps(
    folder: str | os.PathLike[str], *, older_than: float, now: float | None = None
) -> list[Path]:
    """Remove our temporary files (:data:`TMP_PREFIX`) older than ``older_than`` seconds.

    A write killed between its create and its rename (kill -9, a power cut) leaves one
    behind for ever; a younger one may be a write in progress and is left alone. Only
    regular files are removed, never what a link points to. Returns what was removed.
    """
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        names = [n for n in os.listdir(folder) if n.startswith(TMP_PREFIX)]
    except OSError:
        return removed
    for name in names:
        path = Path(folder) / name
        try:
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and now - st.st_mtime > older_than:
                os.unlink(path)
                removed.append(path)
        except OSError:
            continue  # gone meanwhile, or not ours to remove
    return removed


def utc_now() -> str:
    """The current time as an ISO 8601 UTC string to the second, as the store keeps it."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
