"""Noticing that one file changed — written in place, replaced, created or removed.

The service polls ``labels.toml`` and its config file this way, so an edit applies without
a manual SIGHUP. Size, mtime and inode together catch both in-place writes and editors
that save by renaming a new file over the old one.
"""

from __future__ import annotations

import os
from pathlib import Path

Signature = tuple[int, int, int]


def signature(path: Path | None) -> Signature | None:
    """What a change of ``path`` changes; None when it does not exist (or no path)."""
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class FileWatch:
    """``changed()`` is True once for each change of ``path`` since it was last seen."""

    def __init__(self, path: Path | None, *, seen_now: bool = True) -> None:
        self.path = path
        # Not seen yet: a file that exists counts as changed at the first check.
        self._seen = signature(path) if seen_now else None

    def changed(self) -> bool:
        """True once for each change since the last call (or since creation)."""
        now = signature(self.path)
        if now == self._seen:
            return False
        self._seen = now
        return True

    def mark_seen(self) -> None:
        """The file as it is now has been read by someone else: no change to report."""
        self._seen = signature(self.path)
