"""The manifest: the album writer's record of every folder and entry it created.

It lives in ``albums_dir/.facecluster/manifest.json``. Only what it names is ever replaced
or removed; anything else in the tree is a user's. Entries about to be made are saved in
it ahead of time (``pending``), so a run killed half-way leaves a record of all it may
have made. A malformed manifest is read as far as it is valid, never trusted beyond.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from daemon.albums.dirs import AlbumError, clear_leftovers, open_dir
from daemon.albums.names import is_plain_name
from daemon.fsutil import atomic_write

log = structlog.get_logger(__name__)

STATE_DIR = ".facecluster"
MANIFEST_NAME = "manifest.json"
ENTRY_MODES = ("symlink", "hardlink", "copy")

EntryKey = tuple[str, str]
"""(album folder, entry name)."""
SourceSeen = tuple[int, int, int, int]
"""An original's (dev, ino, size, mtime_ns)."""


@dataclass
class ManifestEntry:
    """One entry this writer created: its original, how it refers to it, its identity."""

    source: str
    mode: str
    """What is on disk: ``symlink``, ``hardlink`` or ``copy``."""
    ino: int
    mtime_ns: int | None = None
    """The entry's own mtime when made: inode numbers get reused, this tells them apart."""
    fallback: bool = False
    """A copy made because a hardlink was impossible (other file system)."""
    pending: bool = False
    """Saved ahead of making the entry (write-ahead): the entry on disk may be a new one
    this writer made for ``source`` but had no time to record. The fields above describe
    the entry it replaces (``ino`` is -1 if there was none)."""
    source_seen: SourceSeen | None = None
    """For a pending entry, the original's (dev, ino, size, mtime_ns) when written ahead:
    a copy or hardlink made from it is recognised even after the original is gone."""

    @classmethod
    def made(cls, source: Path, mode: str, st: os.stat_result, fallback: bool) -> ManifestEntry:
        """The record of an entry of ``source`` that is on disk now as ``st`` (an lstat)."""
        return cls(str(source), mode, st.st_ino, st.st_mtime_ns, fallback)

    def is_entry(self, st: os.stat_result) -> bool:
        """Whether ``st`` (an lstat) is still this entry and not something put in its place."""
        if st.st_ino != self.ino:
            return False
        if not (stat.S_ISLNK if self.mode == "symlink" else stat.S_ISREG)(st.st_mode):
            return False
        # A hardlink shares the original's mtime, which an edit of the original changes.
        return self.mode == "hardlink" or self.mtime_ns in (None, st.st_mtime_ns)


@dataclass
class Manifest:
    """Everything this writer created in an albums dir."""

    entries: dict[EntryKey, ManifestEntry] = field(default_factory=dict)
    """(folder, entry name) -> entry."""
    folders: set[str] = field(default_factory=set)
    """Album folders this writer created (and may remove once empty)."""
    loaded: bytes = field(default=b"", repr=False)
    """The file's bytes as read, to skip rewriting an unchanged manifest."""


def _parse_entry(rec: object) -> ManifestEntry | None:
    """One decoded entry record, or None if it is malformed."""
    if not isinstance(rec, dict):
        return None
    source, mode, ino = rec.get("source"), rec.get("mode"), rec.get("ino")
    if not (isinstance(source, str) and mode in ENTRY_MODES and isinstance(ino, int)):
        return None
    mtime, seen = rec.get("mtime_ns"), rec.get("source_seen")
    seen_ok = isinstance(seen, list) and len(seen) == 4 and all(isinstance(v, int) for v in seen)
    return ManifestEntry(
        source, mode, ino, mtime if isinstance(mtime, int) else None,
        rec.get("fallback") is True, rec.get("pending") is True,
        tuple(seen) if seen_ok else None,
    )


def _parse_manifest(data: object) -> Manifest:
    """Validate a decoded manifest; anything malformed is dropped, not trusted."""
    manifest = Manifest()
    if not isinstance(data, dict):
        return manifest
    entries, folders = data.get("entries"), data.get("folders")
    for key, rec in (entries.items() if isinstance(entries, dict) else ()):
        folder, _, name = str(key).partition("/")
        entry = _parse_entry(rec)
        if entry is not None and is_plain_name(folder) and is_plain_name(name):
            manifest.entries[(folder, name)] = entry
    if isinstance(folders, list):
        manifest.folders = {f for f in folders if isinstance(f, str) and is_plain_name(f)}
    return manifest


def _encode(manifest: Manifest) -> bytes:
    data = {
        "version": 1,
        "folders": sorted(manifest.folders),
        "entries": {
            f"{folder}/{name}": {
                "source": e.source, "mode": e.mode, "ino": e.ino, "mtime_ns": e.mtime_ns
            }
            | ({"fallback": True} if e.fallback else {})
            | ({"pending": True} if e.pending else {})
            | ({"source_seen": list(e.source_seen)} if e.source_seen else {})
            for (folder, name), e in sorted(manifest.entries.items())
        },
    }
    return json.dumps(data, separators=(",", ":")).encode()


def read_manifest_at(root_fd: int) -> Manifest:
    """The manifest of the albums dir open as ``root_fd``; empty if missing or corrupt."""
    try:
        state_fd, _ = open_dir(root_fd, STATE_DIR)
    except FileNotFoundError:
        return Manifest()
    try:
        fd = os.open(MANIFEST_NAME, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=state_fd)
    except FileNotFoundError:
        return Manifest()
    except OSError as e:
        raise AlbumError(f"{STATE_DIR}/{MANIFEST_NAME} cannot be read: {e.strerror}") from e
    finally:
        os.close(state_fd)
    with open(fd, "rb") as f:
        raw = f.read()
    try:
        manifest = _parse_manifest(json.loads(raw))
        manifest.loaded = raw
        return manifest
    except (ValueError, UnicodeDecodeError) as e:
        log.warning("album_manifest_corrupt", error=str(e))
        return Manifest()


def read_manifest(albums_dir: Path) -> Manifest:
    """The manifest of ``albums_dir`` (empty if the dir or manifest does not exist)."""
    try:
        root_fd = os.open(albums_dir, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return Manifest()
    try:
        return read_manifest_at(root_fd)
    finally:
        os.close(root_fd)


def save_manifest(root_fd: int, manifest: Manifest) -> None:
    """Replace the manifest atomically (temp file, fsync, rename) unless unchanged."""
    state_fd, _ = open_dir(root_fd, STATE_DIR, create=True)
    try:
        clear_leftovers(state_fd)
        raw = _encode(manifest)
        if raw != manifest.loaded:  # an unchanged tree costs no write at all
            atomic_write(MANIFEST_NAME, raw, dir_fd=state_fd)
            manifest.loaded = raw
    finally:
        os.close(state_fd)
