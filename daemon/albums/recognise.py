"""Telling the album writer's entries from anything else found in an album folder.

Three questions, each about one entry found on disk (an lstat): is it exactly what this
run wants there (:meth:`EntryRecogniser.matches`), is it the entry the manifest records
or one a killed run made for it (:meth:`~EntryRecogniser.owns`), and, for adopting it,
what kind of entry it is (:meth:`~EntryRecogniser.kind_of`). Anything not recognised is
a user's file and is never replaced or removed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from daemon.albums.manifest import ManifestEntry, SourceSeen
from daemon.config import AlbumMode


def seen(st: os.stat_result) -> SourceSeen:
    """What is recorded of an original to recognise copies of it later."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


class EntryRecogniser:
    """Recognises entries of one albums dir for one run (originals are stat'ed once)."""

    def __init__(self, mode: AlbumMode, real_root: str) -> None:
        self.mode = mode
        self._real_root = real_root
        self._real_parents: dict[str, str] = {}
        self._source_stats: dict[str, os.stat_result | None] = {}

    def link_target(self, source: Path) -> str:
        """The relative symlink target from an album folder to ``source``, between real paths."""
        # Every album folder is one real directory below the root, so the way up and over
        # depends only on the original's folder: computed once per folder.
        parent = str(source.parent)
        rel = self._real_parents.get(parent)
        if rel is None:
            rel = os.path.relpath(os.path.realpath(parent), os.path.join(self._real_root, "x"))
            self._real_parents[parent] = rel
        return os.path.join(rel, source.name)

    def source_stat(self, source: Path) -> os.stat_result | None:
        """The original's stat, or None if it cannot be stat'ed (gone, unreadable)."""
        key = str(source)
        if key not in self._source_stats:
            try:
                self._source_stats[key] = os.stat(source)
            except OSError:
                self._source_stats[key] = None
        return self._source_stats[key]

    def matches(self, st: os.stat_result, fd: int, name: str, source: Path,
                rec: ManifestEntry | None) -> bool:
        """Whether the existing entry ``st`` is exactly what this run wants there."""
        if self.mode == "symlink":
            return stat.S_ISLNK(st.st_mode) and os.readlink(name, dir_fd=fd) == self.link_target(
                source
            )
        if not stat.S_ISREG(st.st_mode):
            return False
        src = self.source_stat(source)
        if src is None:
            return False
        same_file = (st.st_ino, st.st_dev) == (src.st_ino, src.st_dev)
        same_copy = not same_file and (st.st_size, st.st_mtime_ns) == (src.st_size, src.st_mtime_ns)
        if self.mode == "hardlink":
            # A copy made because hardlinking was impossible stays a copy.
            return same_file or (same_copy and rec is not None and (rec.fallback or rec.pending))
        return same_copy

    def made_for(self, st: os.stat_result, fd: int, name: str, source: Path,
                 source_seen: SourceSeen | None = None) -> bool:
        """Whether ``st`` is exactly an entry this writer makes for ``source``, in any mode.

        Such an entry is unmistakable: our hashed name, and a link with our relative
        target, the original's own inode, or a copy with its size and mtime.
        ``source_seen`` is the original as it was when the entry was written ahead, for
        when it has since been deleted or changed.
        """
        if stat.S_ISLNK(st.st_mode):
            try:
                return os.readlink(name, dir_fd=fd) == self.link_target(source)
            except OSError:
                return False
        if not stat.S_ISREG(st.st_mode):
            return False
        src = self.source_stat(source)
        known = [seen(src)] if src else []
        known += [source_seen] if source_seen else []
        return any(
            (st.st_dev, st.st_ino) == (dev, ino) or (st.st_size, st.st_mtime_ns) == (size, mtime)
            for dev, ino, size, mtime in known
        )

    def owns(self, rec: ManifestEntry, st: os.stat_result, fd: int, name: str) -> bool:
        """Whether ``st`` is the entry ``rec`` records, or one a killed run made for it."""
        return rec.is_entry(st) or (
            rec.pending and self.made_for(st, fd, name, Path(rec.source), rec.source_seen)
        )

    def kind_of(self, st: os.stat_result, source: Path) -> tuple[str, bool]:
        """(mode, fallback) to record for an entry of ``source`` found as ``st``."""
        if stat.S_ISLNK(st.st_mode):
            return "symlink", False
        src = self.source_stat(source)
        if src is not None and (st.st_ino, st.st_dev) == (src.st_ino, src.st_dev):
            return "hardlink", False
        return "copy", self.mode == "hardlink"
