"""Noticing that one file changed — written in place, replaced, created or removed.

The service polls ``labels.toml`` and its config file this way, so an edit applies without
a manual SIGHUP. Size, mtime and inode together catch both in-place writes and editors
that save by renaming a new file over the old one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
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
    """``changed()`` is True once for each change of ``path`` since it was last seen.

    ``path`` may be several files (a config and the local file over it): a change of
    any of them, its creation or removal included, counts.
    """

    def __init__(
        self, path: Path | Sequence[Path] | None, *, seen_now: bool = True
    ) -> None:
        self.paths: tuple[Path | None, ...] = (
            tuple(path) if isinstance(path, (tuple, list)) else (path,)
        )
        # Not seen yet: a file that exists counts as changed at the first check.
        self._seen = self._now() if seen_now else None

    def _now(self) -> tuple[Signature | None, ...]:
        return tuple(signature(p) for p in self.paths)

    def changed(self) -> bool:
        """True once for each change since the last call (or since creation)."""
        now = self._now()
        if now == self._seen or (self._seen is None and not any(now)):
            return False
        self._seen = now
        return True

    def mark_seen(self) -> None:
        """The file as it is now has been read by someone else: no change to report."""
        self._seen = self._now()
