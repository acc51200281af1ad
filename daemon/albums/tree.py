"""The albums dir open for one reconcile: making, moving and removing its entries.

:class:`AlbumTree` does each entry operation and keeps the manifest and the counts in
step with it. One failing entry is logged and counted; running out of space stops adding
entries (removals still happen, freeing space) and sets :attr:`AlbumReport.no_space`.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from daemon.albums.dirs import AlbumError, open_dir
from daemon.albums.entries import NoHardlink, copy_into, link_into, symlink_into
from daemon.albums.manifest import EntryKey, Manifest, ManifestEntry
from daemon.albums.recognise import EntryRecogniser
from daemon.config import AlbumMode

log = structlog.get_logger(__name__)

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


@dataclass
class AlbumReport:
    """What one reconcile did (counted as it goes)."""

    added: int = 0
    removed: int = 0
    kept: int = 0
    errors: int = 0
    no_space: bool = False
    """The disk filled up: some entries were not added; retry after freeing space."""


@dataclass
class AlbumTree:
    """The open albums dir, its manifest, and what this reconcile did to it so far."""

    root: Path
    root_fd: int
    mode: AlbumMode
    manifest: Manifest
    report: AlbumReport = field(default_factory=AlbumReport)
    recognise: EntryRecogniser = field(init=False)
    fell_back: bool = False

    def __post_init__(self) -> None:
        self.recognise = EntryRecogniser(self.mode, os.path.realpath(self.root))

    def fail(self, event: str, exc: OSError, **fields: object) -> None:
        """Count a failed entry; a full disk stops further additions."""
        if exc.errno in _NO_SPACE:
            if not self.report.no_space:
                log.error("albums_out_of_space", albums_dir=str(self.root), error=exc.strerror)
            self.report.no_space = True
        else:
            log.error(event, error=exc.strerror or str(exc), **fields)
        self.report.errors += 1

    def adopt(self, key: EntryKey, st: os.stat_result, source: Path) -> None:
        """Record an entry found on disk as ``st`` that this writer made for ``source``."""
        mode, fallback = self.recognise.kind_of(st, source)
        self.manifest.entries[key] = ManifestEntry.made(source, mode, st, fallback)

    def create(self, fd: int, folder: str, name: str, source: Path, replace: bool) -> None:
        """Make the entry ``folder/name`` for ``source`` and record it."""
        mode = self.mode
        if mode == "symlink":
            symlink_into(fd, name, self.recognise.link_target(source), replace)
        elif mode == "hardlink":
            try:
                link_into(fd, name, source, replace)
            except NoHardlink as e:
                if not self.fell_back:
                    log.warning("hardlink_fallback_copy", albums_dir=str(self.root), reason=str(e))
                self.fell_back = True
                mode = "copy"
                copy_into(fd, name, source)
        else:
            copy_into(fd, name, source)
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        self.manifest.entries[(folder, name)] = ManifestEntry.made(
            source, mode, st, mode != self.mode
        )

    def remove(self, folder: str, name: str) -> None:
        """Remove a stale entry if it is still the one this writer made."""
        rec = self.manifest.entries[(folder, name)]
        try:
            fd, _ = open_dir(self.root_fd, folder)
        except FileNotFoundError:
            del self.manifest.entries[(folder, name)]
            return
        except AlbumError as e:
            log.error("album_folder_unsafe", folder=folder, error=str(e))
            self.report.errors += 1
            return
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if self.recognise.owns(rec, st, fd, name):
                os.unlink(name, dir_fd=fd)
                self.report.removed += 1
            else:
                log.warning("album_entry_left", entry=f"{folder}/{name}",
                            reason="changed by someone else; not removing it")
            del self.manifest.entries[(folder, name)]
        except FileNotFoundError:
            del self.manifest.entries[(folder, name)]
        except OSError as e:
            self.fail("album_entry_remove_failed", e, entry=f"{folder}/{name}")
        finally:
            os.close(fd)

    def move(self, old: EntryKey, fd: int, folder: str, name: str, source: Path) -> bool:
        """Move a stale entry of the same original into ``folder``; False if impossible."""
        try:
            old_fd, _ = open_dir(self.root_fd, old[0])
        except (OSError, AlbumError):
            return False
        try:
            rec = self.manifest.entries[old]
            st = os.stat(old[1], dir_fd=old_fd, follow_symlinks=False)
            if not self.recognise.owns(rec, st, old_fd, old[1]):
                return False
            os.rename(old[1], name, src_dir_fd=old_fd, dst_dir_fd=fd)
        except OSError:
            return False
        finally:
            os.close(old_fd)
        del self.manifest.entries[old]
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if rec.pending:  # made by a killed run: record what it turned out to be
            mode, fallback = self.recognise.kind_of(st, source)
            rec = ManifestEntry.made(source, mode, st, fallback)
        self.manifest.entries[(folder, name)] = ManifestEntry(
            str(source), rec.mode, rec.ino, rec.mtime_ns, rec.fallback
        )
        if not self.recognise.matches(st, fd, name, source, rec):
            # Same inode but not right here (e.g. a copy of an edited original): redo it.
            self.create(fd, folder, name, source, replace=True)
        self.report.added += 1
        self.report.removed += 1
        return True
