"""Make the album folders on disk match a list of :class:`AlbumPlan`.

Layout::

    albums_dir/
      Grandma/IMG_0001~3fa2c1d0.jpg   -> ../../photos/2019/IMG_0001.jpg  (relative symlink)
      person-0007/...
      .facecluster/manifest.json      what this writer created (it removes nothing else)
      .thumbnails/                    see pictures.py

Entry names are ``<stem>~<hash><suffix>``: the original's file name plus the first 8 hex
digits of the SHA-1 of its absolute path. The name is a pure function of the source, so
two ``IMG_0001.jpg`` from different folders never collide, an entry keeps its name from
run to run, and it keeps it when its person is renamed (the entry is then moved, not
re-created). Names longer than 255 bytes are shortened in the stem.

Reconciling is cheap when nothing changed: one ``lstat`` (plus ``readlink`` or a
``stat`` of the original) per entry, no writes. Safety rules:

* Only entries recorded in the manifest (or found to be exactly what this writer would
  create) are ever replaced or removed; any other file is a user's and is left alone
  (a name clash with one is counted as an error).
* Write-ahead: new folders, and entries about to be made (marked ``pending``), are saved
  in the manifest before anything is created, so after a kill -9 the next run finds
  every folder and entry the killed run may have made and adopts or removes it.
* Temporary files a killed write left behind are removed when a folder is opened
  (writes are single-writer: the service holds the state lock).
* Every file operation goes through a directory file descriptor opened with
  ``O_NOFOLLOW``: an album folder, or ``.facecluster``, that is a symlink (planted to
  point at ``/etc``, say) is refused, never followed.
* Symlinks are relative, computed between real paths, so they keep working when the
  share is mounted elsewhere and Samba follows them without ``wide links``.
* ``hardlink`` falls back to a copy across file systems; copies keep the original's
  mtime and are written to a temporary name, then renamed into place.
* One failing entry is logged and counted; running out of space stops adding entries
  (removals still happen, freeing space) and sets :attr:`AlbumReport.no_space` so the
  caller can pause and retry later.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import shutil
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import structlog

from daemon.albums.plan import AlbumPlan
from daemon.fsutil import TMP_PREFIX, atomic_write, atomic_writer, temp_name

log = structlog.get_logger(__name__)

AlbumMode = Literal["symlink", "hardlink", "copy"]
STATE_DIR = ".facecluster"
MANIFEST_NAME = "manifest.json"
MAX_NAME_BYTES = 255
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
_LITTER = {"@eaDir", ".@__thumb", ".DS_Store", "Thumbs.db", "desktop.ini", ".AppleDouble"}
# Errors of os.link that mean "no hardlink here", not "this entry failed".
_NO_HARDLINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}


class AlbumError(Exception):
    """The album tree cannot be written or read safely (message says why and where)."""


@dataclass(frozen=True)
class AlbumReport:
    """What one reconcile did."""

    added: int = 0
    removed: int = 0
    kept: int = 0
    errors: int = 0
    no_space: bool = False
    """The disk filled up: some entries were not added; retry after freeing space."""


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
    source_seen: tuple[int, int, int, int] | None = None
    """For a pending entry, the original's (dev, ino, size, mtime_ns) when written ahead:
    a copy or hardlink made from it is recognised even after the original is gone."""

    def is_entry(self, st: os.stat_result) -> bool:
        """Whether ``st`` (an lstat) is still this entry and not something put in its place."""
        if st.st_ino != self.ino:
            return False
        if not (stat.S_ISLNK if self.mode == "symlink" else stat.S_ISREG)(st.st_mode):
            return False
        # A hardlink shares the original's mtime, which an edit of the original changes.
        return self.mode == "hardlink" or self.mtime_ns in (None, st.st_mtime_ns)


def _record(source: Path, mode: str, st: os.stat_result, fallback: bool) -> ManifestEntry:
    return ManifestEntry(str(source), mode, st.st_ino, st.st_mtime_ns, fallback)


@dataclass
class Manifest:
    """Everything this writer created in an albums dir."""

    entries: dict[tuple[str, str], ManifestEntry] = field(default_factory=dict)
    """(folder, entry name) -> entry."""
    folders: set[str] = field(default_factory=set)
    """Album folders this writer created (and may remove once empty)."""
    loaded: bytes = field(default=b"", repr=False)
    """The file's bytes as read, to skip rewriting an unchanged manifest."""


def is_plain_name(name: str) -> bool:
    """Whether ``name`` is one visible path component (no separator, dot-name or NUL)."""
    return (
        bool(name)
        and "/" not in name
        and "\0" not in name
        and not name.startswith(".")
        and len(os.fsencode(name)) <= MAX_NAME_BYTES
    )


def entry_name(source: Path) -> str:
    """The stable, collision-free name of ``source``'s entry in an album."""
    absolute = str(source) if source.is_absolute() else os.path.abspath(source)
    digest = hashlib.sha1(os.fsencode(absolute)).hexdigest()[:8]
    stem, suffix = os.path.splitext(source.name)
    if len(os.fsencode(suffix)) > 16:  # not a real extension
        stem, suffix = source.name, ""
    room = MAX_NAME_BYTES - len(os.fsencode(suffix)) - 9
    while len(os.fsencode(stem)) > room:
        stem = stem[:-1]
    return f"{stem}~{digest}{suffix}"


# -- manifest ---------------------------------------------------------------------------


def open_dir(parent_fd: int, name: str, *, create: bool = False) -> tuple[int, bool]:
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
        os.mkdir(name, 0o755, dir_fd=parent_fd)
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


def _parse_manifest(data: object) -> Manifest:
    """Validate a decoded manifest; anything malformed is dropped, not trusted."""
    manifest = Manifest()
    if not isinstance(data, dict):
        return manifest
    entries, folders = data.get("entries"), data.get("folders")
    for key, rec in (entries.items() if isinstance(entries, dict) else ()):
        folder, _, name = str(key).partition("/")
        if not (is_plain_name(folder) and is_plain_name(name) and isinstance(rec, dict)):
            continue
        source, mode, ino = rec.get("source"), rec.get("mode"), rec.get("ino")
        valid = mode in ("symlink", "hardlink", "copy") and isinstance(ino, int)
        if isinstance(source, str) and valid:
            mtime, seen = rec.get("mtime_ns"), rec.get("source_seen")
            seen_ok = (isinstance(seen, list) and len(seen) == 4
                       and all(isinstance(v, int) for v in seen))
            manifest.entries[(folder, name)] = ManifestEntry(
                source, mode, ino, mtime if isinstance(mtime, int) else None,
                rec.get("fallback") is True, rec.get("pending") is True,
                tuple(seen) if seen_ok else None,
            )
    if isinstance(folders, list):
        manifest.folders = {f for f in folders if isinstance(f, str) and is_plain_name(f)}
    return manifest


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


def _write_manifest(root_fd: int, manifest: Manifest) -> None:
    """Save the manifest at the end of a run, whatever happened in it."""
    _save_manifest(root_fd, manifest)


def _save_manifest(root_fd: int, manifest: Manifest) -> None:
    """Replace the manifest atomically (temp file, fsync, rename) unless unchanged."""
    state_fd, _ = open_dir(root_fd, STATE_DIR, create=True)
    try:
        clear_leftovers(state_fd)
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
        raw = json.dumps(data, separators=(",", ":")).encode()
        if raw != manifest.loaded:  # an unchanged tree costs no write at all
            atomic_write(MANIFEST_NAME, raw, dir_fd=state_fd)
            manifest.loaded = raw
    finally:
        os.close(state_fd)


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


def _unlink_quietly(dir_fd: int, name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name, dir_fd=dir_fd)


# -- making entries ---------------------------------------------------------------------


class _NoHardlink(Exception):
    """os.link is impossible here (other file system, not permitted); copy instead."""


def _copy_into(dir_fd: int, name: str, source: Path) -> None:
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
            _unlink_quietly(dir_fd, target)
            raise


def _link_into(dir_fd: int, name: str, source: Path, replace: bool) -> None:
    def make(target: str) -> None:
        try:
            os.link(source, target, dst_dir_fd=dir_fd, follow_symlinks=True)
        except OSError as e:
            if e.errno in _NO_HARDLINK:
                raise _NoHardlink(e.strerror) from e
            raise

    _put(dir_fd, name, replace, make)


def _symlink_into(dir_fd: int, name: str, link_target: str, replace: bool) -> None:
    _put(dir_fd, name, replace, lambda target: os.symlink(link_target, target, dir_fd=dir_fd))


# -- reconciling ------------------------------------------------------------------------


@dataclass
class _Run:
    """State of one reconcile: the open albums dir, the manifest and the counters."""

    root: Path
    root_fd: int
    real_root: str
    mode: AlbumMode
    manifest: Manifest
    added: int = 0
    removed: int = 0
    kept: int = 0
    errors: int = 0
    no_space: bool = False
    fell_back: bool = False
    _real_parents: dict[str, str] = field(default_factory=dict)
    _source_stats: dict[str, os.stat_result | None] = field(default_factory=dict)

    def link_target(self, folder: str, source: Path) -> str:
        """The relative symlink target from ``folder`` to ``source``, between real paths."""
        # Every album folder is one real directory below the root, so the way up and over
        # depends only on the original's folder: computed once per folder.
        parent = str(source.parent)
        rel = self._real_parents.get(parent)
        if rel is None:
            rel = os.path.relpath(os.path.realpath(parent), os.path.join(self.real_root, "x"))
            self._real_parents[parent] = rel
        return os.path.join(rel, source.name)

    def source_stat(self, source: Path) -> os.stat_result | None:
        key = str(source)
        if key not in self._source_stats:
            try:
                self._source_stats[key] = os.stat(source)
            except OSError:
                self._source_stats[key] = None
        return self._source_stats[key]

    def matches(self, folder: str, st: os.stat_result, fd: int, name: str, source: Path,
                rec: ManifestEntry | None) -> bool:
        """Whether the existing entry ``st`` is exactly what this run wants there."""
        if self.mode == "symlink":
            return stat.S_ISLNK(st.st_mode) and os.readlink(name, dir_fd=fd) == self.link_target(
                folder, source
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

    def made_for(self, folder: str, st: os.stat_result, fd: int, name: str,
                 source: Path, seen: tuple[int, int, int, int] | None = None) -> bool:
        """Whether ``st`` is exactly an entry this writer makes for ``source``, in any mode.

        Such an entry is unmistakable: our hashed name, and a link with our relative
        target, the original's own inode, or a copy with its size and mtime. ``seen`` is
        the original as it was when the entry was written ahead, for when it has since
        been deleted or changed.
        """
        if stat.S_ISLNK(st.st_mode):
            try:
                return os.readlink(name, dir_fd=fd) == self.link_target(folder, source)
            except OSError:
                return False
        if not stat.S_ISREG(st.st_mode):
            return False
        src = self.source_stat(source)
        known = [(src.st_dev, src.st_ino, src.st_size, src.st_mtime_ns)] if src else []
        known += [seen] if seen else []
        return any(
            (st.st_dev, st.st_ino) == (dev, ino) or (st.st_size, st.st_mtime_ns) == (size, mtime)
            for dev, ino, size, mtime in known
        )

    def owns(self, rec: ManifestEntry, folder: str, st: os.stat_result, fd: int,
             name: str) -> bool:
        """Whether ``st`` is the entry ``rec`` records, or one a killed run made for it."""
        return rec.is_entry(st) or (
            rec.pending
            and self.made_for(folder, st, fd, name, Path(rec.source), rec.source_seen)
        )

    def on_disk(self, st: os.stat_result, source: Path) -> tuple[str, bool]:
        """(mode, fallback) to record for an entry of ``source`` found as ``st``."""
        if stat.S_ISLNK(st.st_mode):
            return "symlink", False
        src = self.source_stat(source)
        if src is not None and (st.st_ino, st.st_dev) == (src.st_ino, src.st_dev):
            return "hardlink", False
        return "copy", self.mode == "hardlink"

    def fail(self, event: str, exc: OSError, **fields: object) -> None:
        """Count a failed entry; a full disk stops further additions."""
        if exc.errno in _NO_SPACE:
            if not self.no_space:
                log.error("albums_out_of_space", albums_dir=str(self.root), error=exc.strerror)
            self.no_space = True
        else:
            log.error(event, error=exc.strerror or str(exc), **fields)
        self.errors += 1

    def create(self, fd: int, folder: str, name: str, source: Path, replace: bool) -> None:
        """Make the entry ``folder/name`` for ``source`` and record it."""
        mode = self.mode
        if mode == "symlink":
            _symlink_into(fd, name, self.link_target(folder, source), replace)
        elif mode == "hardlink":
            try:
                _link_into(fd, name, source, replace)
            except _NoHardlink as e:
                if not self.fell_back:
                    log.warning("hardlink_fallback_copy", albums_dir=str(self.root), reason=str(e))
                self.fell_back = True
                mode = "copy"
                _copy_into(fd, name, source)
        else:
            _copy_into(fd, name, source)
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        self.manifest.entries[(folder, name)] = _record(source, mode, st, mode != self.mode)

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
            self.errors += 1
            return
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if self.owns(rec, folder, st, fd, name):
                os.unlink(name, dir_fd=fd)
                self.removed += 1
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

    def move(self, old: tuple[str, str], fd: int, folder: str, name: str, source: Path) -> bool:
        """Move a stale entry of the same original into ``folder``; False if impossible."""
        try:
            old_fd, _ = open_dir(self.root_fd, old[0])
        except (OSError, AlbumError):
            return False
        try:
            rec = self.manifest.entries[old]
            st = os.stat(old[1], dir_fd=old_fd, follow_symlinks=False)
            if not self.owns(rec, old[0], st, old_fd, old[1]):
                return False
            os.rename(old[1], name, src_dir_fd=old_fd, dst_dir_fd=fd)
        except OSError:
            return False
        finally:
            os.close(old_fd)
        del self.manifest.entries[old]
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if rec.pending:  # made by a killed run: record what it turned out to be
            mode, fallback = self.on_disk(st, source)
            rec = _record(source, mode, st, fallback)
        self.manifest.entries[(folder, name)] = ManifestEntry(
            str(source), rec.mode, rec.ino, rec.mtime_ns, rec.fallback
        )
        if not self.matches(folder, st, fd, name, source, rec):
            # Same inode but not right here (e.g. a copy of an edited original): redo it.
            self.create(fd, folder, name, source, replace=True)
        self.added += 1
        self.removed += 1
        return True


def _desired(plans: Sequence[AlbumPlan]) -> dict[str, dict[str, Path]]:
    """folder -> entry name -> original, refusing unsafe folder names."""
    want: dict[str, dict[str, Path]] = {}
    names: dict[Path, str] = {}  # a photo in many albums is named once
    for plan in plans:
        if not is_plain_name(plan.folder):
            raise AlbumError(f"album folder name {plan.folder!r} is not a plain folder name")
        if plan.folder in want:
            raise AlbumError(f"two albums share the folder {plan.folder!r}")
        entries = want[plan.folder] = {}
        for photo in plan.photos:
            name = names.get(photo)
            if name is None:
                name = names[photo] = entry_name(photo)
            entries[name] = photo if photo.is_absolute() else Path(os.path.abspath(photo))
    return want


def write_albums(albums_dir: Path, plans: Sequence[AlbumPlan], mode: AlbumMode) -> AlbumReport:
    """Reconcile ``albums_dir`` with ``plans``: add, move, keep and remove entries.

    Raises :class:`AlbumError` if the albums dir itself or its ``.facecluster`` folder
    cannot be used safely; per-entry problems are logged and counted instead.
    """
    if mode not in ("symlink", "hardlink", "copy"):
        raise AlbumError(f"album mode must be symlink, hardlink or copy, got {mode!r}")
    want = _desired(plans)
    albums_dir = Path(os.path.abspath(albums_dir))
    try:
        albums_dir.mkdir(parents=True, exist_ok=True)
        root_fd = os.open(albums_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise AlbumError(f"cannot use albums folder {albums_dir}: {e.strerror or e}") from e
    try:
        run = _Run(albums_dir, root_fd, os.path.realpath(albums_dir), mode,
                   read_manifest_at(root_fd))
        try:
            _reconcile(run, want)
        finally:
            _write_manifest(root_fd, run.manifest)
    finally:
        os.close(root_fd)
    report = AlbumReport(run.added, run.removed, run.kept, run.errors, run.no_space)
    log.debug("albums_reconciled", albums_dir=str(albums_dir), **report.__dict__)
    return report


def _reconcile(run: _Run, want: dict[str, dict[str, Path]]) -> None:
    manifest = run.manifest
    stale = {
        key for key, rec in manifest.entries.items()
        if want.get(key[0], {}).get(key[1]) is None
        or str(want[key[0]][key[1]]) != rec.source
    }
    stale_by_source: dict[str, list[tuple[str, str]]] = {}
    for key in sorted(stale):
        stale_by_source.setdefault(manifest.entries[key].source, []).append(key)

    # Write-ahead: folders are recorded before they are made, so a run killed in between
    # leaves none that no later run knows to remove.
    missing = {f for f in want if f not in manifest.folders and not exists_at(run.root_fd, f)}
    if missing:
        manifest.folders |= missing
        _save_manifest(run.root_fd, manifest)

    folder_fds: dict[str, int] = {}
    todo: list[tuple[str, str, Path, bool]] = []  # folder, name, source, replace
    try:
        for folder in sorted(want):
            try:
                fd, created = open_dir(run.root_fd, folder, create=True)
            except (AlbumError, OSError) as e:
                log.error("album_folder_unusable", folder=folder, error=str(e))
                run.errors += len(want[folder])
                continue
            folder_fds[folder] = fd
            clear_leftovers(fd)
            if created:
                manifest.folders.add(folder)
            adopted = False
            for name, source in sorted(want[folder].items()):
                key = (folder, name)
                rec = manifest.entries.get(key)
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    todo.append((folder, name, source, False))
                    continue
                except OSError as e:
                    run.fail("album_entry_failed", e, entry=f"{folder}/{name}")
                    continue
                ours = (rec is not None and rec.source == str(source)
                        and run.owns(rec, folder, st, fd, name))
                if run.matches(folder, st, fd, name, source, rec):
                    run.kept += 1
                    if not ours or rec.pending:
                        # made by an earlier run that died before recording it
                        on_disk, fallback = run.on_disk(st, source)
                        manifest.entries[key] = _record(source, on_disk, st, fallback)
                        stale.discard(key)
                        adopted = True
                elif ours:
                    todo.append((folder, name, source, True))
                else:
                    log.warning("album_entry_conflict", entry=f"{folder}/{name}",
                                reason="a file not made by facecluster has this name")
                    run.errors += 1
            if adopted and folder not in manifest.folders and set(os.listdir(fd)) <= set(
                want[folder]
            ):
                manifest.folders.add(folder)  # nothing but our entries: a folder we made

        before = _write_ahead(run, todo)
        # Moves first (a relabel renames an album), then removals, which free space.
        rest: list[tuple[str, str, Path, bool]] = []
        for folder, name, source, replace in todo:
            olds = [k for k in stale_by_source.get(str(source), []) if k in stale]
            if not replace and olds and run.move(olds[0], folder_fds[folder], folder, name,
                                                 source):
                stale.discard(olds[0])
            else:
                rest.append((folder, name, source, replace))
        for key in sorted(stale):
            if key in manifest.entries:
                run.remove(*key)
        for folder, name, source, replace in rest:
            if run.no_space:
                run.errors += 1
                continue
            if run.mode != "symlink" and run.source_stat(source) is None:
                log.error("album_source_missing", entry=f"{folder}/{name}", source=str(source))
                run.errors += 1
                continue
            try:
                run.create(folder_fds[folder], folder, name, source, replace)
                run.added += 1
            except OSError as e:
                run.fail("album_entry_failed", e, entry=f"{folder}/{name}", source=str(source))
        for key, old in before.items():  # written ahead but not made after all
            rec = manifest.entries.get(key)
            if rec is not None and rec.pending:
                if old is None:
                    del manifest.entries[key]
                else:
                    manifest.entries[key] = old
    finally:
        for fd in folder_fds.values():
            os.close(fd)
    _remove_empty_folders(run, set(want))


def _write_ahead(run: _Run, todo: list[tuple[str, str, Path, bool]]
                 ) -> dict[tuple[str, str], ManifestEntry | None]:
    """Record the entries about to be made as pending, save, and return the old records.

    A run killed while making them leaves a manifest that names every entry it may have
    made, so the next run can tell them from a user's files and adopt or remove them.
    """
    before: dict[tuple[str, str], ManifestEntry | None] = {}
    for folder, name, source, _ in todo:
        key = (folder, name)
        old = before[key] = run.manifest.entries.get(key)
        # A symlink is proven by its target; only copies and hardlinks need the original.
        src = None if run.mode == "symlink" else run.source_stat(source)
        seen = (src.st_dev, src.st_ino, src.st_size, src.st_mtime_ns) if src else None
        run.manifest.entries[key] = (
            ManifestEntry(str(source), run.mode, -1, None, pending=True, source_seen=seen)
            if old is None else dataclasses.replace(old, pending=True, source_seen=seen)
        )
    if todo:
        _save_manifest(run.root_fd, run.manifest)
    return before


def exists_at(dir_fd: int, name: str) -> bool:
    """Whether ``name`` exists in ``dir_fd`` (as anything, a dangling symlink included)."""
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _is_litter(name: str) -> bool:
    """Files a NAS or desktop drops into every folder it shows (thumbnails, view settings)."""
    return name in _LITTER or name.startswith(("._", TMP_PREFIX))


def _clear_litter(root_fd: int, folder: str) -> bool:
    """Remove NAS/desktop litter and our temp files if that is all ``folder`` holds."""
    try:
        fd, _ = open_dir(root_fd, folder)
    except (OSError, AlbumError):
        return False
    try:
        names = os.listdir(fd)
        if not names or not all(_is_litter(n) for n in names):
            return False
        for name in names:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(name, dir_fd=fd)  # fd-based: does not follow symlinks inside
            else:
                os.unlink(name, dir_fd=fd)
        return True
    except OSError as e:
        log.warning("album_folder_litter", folder=folder, error=e.strerror)
        return False
    finally:
        os.close(fd)


def _remove_empty_folders(run: _Run, wanted: set[str]) -> None:
    """Remove album folders this writer created that are no longer wanted and are empty.

    A folder holding only litter of a NAS or desktop (Synology ``@eaDir``, QNAP
    ``.@__thumb``, ``.DS_Store``, ``Thumbs.db``) counts as empty; anything else in it is a
    user's and keeps the folder.
    """
    in_use = {folder for folder, _ in run.manifest.entries}
    for folder in sorted(run.manifest.folders - wanted - in_use):
        for attempt in (1, 2):
            try:
                os.rmdir(folder, dir_fd=run.root_fd)  # rmdir never follows a symlink
            except FileNotFoundError:
                pass
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    log.warning("album_folder_remove_failed", folder=folder, error=e.strerror)
                elif attempt == 1 and _clear_litter(run.root_fd, folder):
                    continue
                else:
                    log.info("album_folder_kept", folder=folder, reason="holds files of a user")
                break
            run.manifest.folders.discard(folder)
            break
