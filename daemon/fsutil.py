"""Replacing a file so that a reader sees the old bytes or the new ones, never a mix.

Every file facecluster writes (status, manifests, thumbnails, album copies, model files,
ZIP exports, ``people.toml``) goes through :func:`atomic_writer`: a temporary name beside
the target, ``O_EXCL | O_NOFOLLOW`` so a planted link is never written through, an
optional fsync, then a rename. A failure anywhere removes the temporary file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from datetime import datetime, timezone
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


def utc_now() -> str:
    """The current time as an ISO 8601 UTC string to the second, as the store keeps it."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
