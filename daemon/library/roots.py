"""Whether a watched folder is really there, so that an unmounted share never empties albums.

An unmounted NFS/SMB share usually leaves its mount point behind as an empty folder (or,
now and then, one holding a placeholder file). Taking that for "every photo deleted"
would empty the albums, so every place that is about to forget photos asks
:func:`root_present` first. Two pieces of evidence count:

- a root once seen as a mount point (remembered by :class:`MountPoints`) that is no
  longer one lost its share;
- an empty root counts as absent (it is what a one-shot scan sees of an unmounted share):
  its photos stay known until it has content again (a user who really deletes every
  photo of a folder can remove it from ``watch``).

:func:`root_watchable` is the weaker question the watcher asks before watching a root:
an empty folder can be watched (nothing is lost by watching it), a lost mount cannot.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

MountState = Literal["mounted", "lost", "folder"]


class MountPoints:
    """The roots seen as mount points so far in this process."""

    def __init__(self) -> None:
        self._seen: set[Path] = set()

    def state(self, root: Path) -> MountState:
        """``mounted`` now; ``lost`` if it was a mount point and no longer is (its share
        was unmounted); else a plain ``folder``. Looking records a mount point."""
        if os.path.ismount(root):
            self._seen.add(root)
            return "mounted"
        return "lost" if root in self._seen else "folder"


def root_present(root: Path, mounts: MountPoints) -> bool:
    """Whether ``root`` is really there, so that photos missing under it may be forgotten.

    A folder that can be watched (:func:`root_watchable`) and has content. An empty
    mounted share counts as absent too: a server whose volume went away serves just that.
    """
    if not root_watchable(root, mounts):
        return False
    try:
        with os.scandir(root) as it:
            return any(True for _ in it)
    except OSError:
        return False


def root_watchable(root: Path, mounts: MountPoints) -> bool:
    """Whether ``root`` can be watched: a folder that no share was unmounted from."""
    return os.path.isdir(root) and mounts.state(root) != "lost"
