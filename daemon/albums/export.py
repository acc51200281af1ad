"""Export one album as a ZIP file of its photos.

Only the album's own entries are exported - the ones the writer recorded in its
manifest - and only those whose original is a photo the store knows (``known``), so a
file or symlink planted in an album folder (say, a link to ``/etc/shadow``), even with
a matching manifest entry, never ends up in a ZIP: the manifest lives on the share and
whoever can write there can edit it. A symlink entry's original is opened by its
recorded path, walked down from its watched folder one component at a time without
following any link, and read only if it is the very file the album link leads to.

Members are stored uncompressed (photos are compressed already) under their plain
entry names, never a path, so unpacking the ZIP cannot write outside its target folder.
The ZIP is written to a temporary file beside ``zip_path`` and renamed into place, so a
failed export leaves no half-written file.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import time
import zipfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import structlog

from daemon.albums.dirs import AlbumError, open_dir, open_root
from daemon.albums.manifest import read_manifest_at
from daemon.albums.names import is_plain_name
from daemon.fsutil import atomic_writer

log = structlog.get_logger(__name__)


class ExportError(AlbumError):
    """The album does not exist or cannot be exported (the message says which)."""


def _zip_time(mtime: float) -> tuple[int, int, int, int, int, int]:
    """A ZIP timestamp (local time, 1980..2107 as the format allows)."""
    t = time.localtime(min(max(mtime, 315532800), 4354819199))
    return (max(1980, t.tm_year), t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)


@dataclass(frozen=True)
class KnownPhotos:
    """What an export may read: the store's photos of the album, in the watched folders."""

    photos: Collection[Path]
    """Absolute paths of the album's originals, as the store has them."""
    roots: Sequence[Path]
    """The watched folders."""

    def locate(self, source: Path) -> tuple[Path, tuple[str, ...]] | None:
        """The watched folder and the parts below it of ``source``, if it is one of the
        album's photos and inside a watched folder; None means it may not be read."""
        if source not in self.photos:
            return None
        return _under_root(source, self.roots)


def _under_root(source: Path, roots: Sequence[Path]) -> tuple[Path, tuple[str, ...]] | None:
    """The watched folder holding ``source`` and the path's parts below it, if any."""
    norm = Path(os.path.normpath(source))
    for root in roots:
        base = Path(os.path.normpath(root))
        if norm != base and norm.is_relative_to(base):
            parts = norm.relative_to(base).parts
            if os.pardir not in parts:
                return base, parts
    return None


_NOFOLLOW = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def open_original(source: str, known: KnownPhotos) -> int:
    """Open a known photo for reading, following no link below its watched folder."""
    path = Path(source)
    found = known.locate(path)
    if found is None:
        raise ExportError(f"{source}: not a photo facecluster knows in a watched folder")
    # Watched folders are the user's own setting: a link there is theirs and followed.
    root, parts = found
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    try:
        for part in parts[:-1]:
            nxt = os.open(part, _NOFOLLOW | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        return os.open(parts[-1], _NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise ExportError(f"{source}: a symbolic link on the way; not read") from e
        raise
    finally:
        os.close(fd)


def _open_entry(dir_fd: int, name: str, mode: str, source: str, known: KnownPhotos) -> int:
    """Open an album entry for reading: our symlink to its original, or our own file."""
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if mode == "symlink":
        if not stat.S_ISLNK(st.st_mode):
            raise ExportError(f"{name}: expected facecluster's link, found something else")
        # Open the original by the recorded path rather than through the link, so a link
        # replaced meanwhile cannot redirect the read; but the manifest lives on the share
        # and anyone who can write there can edit ``source``, so the file opened must be a
        # known photo and also the one the link leads to, or export would read whatever
        # the service can.
        fd = open_original(source, known)
        try:
            opened = os.fstat(fd)
            linked = os.stat(name, dir_fd=dir_fd)
        except OSError:
            os.close(fd)
            raise
        if (linked.st_dev, linked.st_ino) != (opened.st_dev, opened.st_ino):
            os.close(fd)
            raise ExportError(f"{name}: the manifest's source is not where the link leads")
        return fd
    # A copy or hardlink is read as the entry itself; it must still be of a known photo.
    if known.locate(Path(source)) is None:
        raise ExportError(f"{name}: not an entry of a photo facecluster knows")
    return os.open(name, _NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)


def zip_target(given: str, folder: str) -> Path:
    """Where ``--zip given`` writes album ``folder``: a folder gets ``<folder>.zip`` in it.

    Refused with a plain message when the folder to write into does not exist (the
    temporary file beside the target would otherwise fail with a bare ENOENT).
    """
    path = Path(os.path.abspath(os.path.expanduser(given)))
    if given.endswith(("/", os.sep)) or path.is_dir():
        if not path.is_dir():
            raise ExportError(f"cannot write the ZIP: the folder {given} does not exist")
        return path / f"{arcname(folder)}.zip"
    if not path.parent.is_dir():
        raise ExportError(f"cannot write {given}: the folder {path.parent} does not exist")
    return path


def export_zip(albums_dir: Path, folder: str, zip_path: Path, *, known: KnownPhotos) -> int:
    """Write the photos of album ``folder`` to ``zip_path``; returns how many.

    Only entries of ``known`` photos are read. Raises :class:`ExportError` for an unknown
    or unsafe album; photos that cannot be read are logged and left out.
    """
    if not is_plain_name(folder):
        raise ExportError(f"{folder!r} is not an album folder name")
    root_fd = open_root(albums_dir, ExportError)
    try:
        manifest = read_manifest_at(root_fd)
        entries = sorted(
            (name, rec) for (f, name), rec in manifest.entries.items() if f == folder
        )
        try:
            album_fd, _ = open_dir(root_fd, folder)
        except FileNotFoundError:
            album_fd = -1
        if album_fd < 0 or not entries:
            if album_fd >= 0:
                os.close(album_fd)
            known = sorted({f for f, _ in manifest.entries})
            raise ExportError(
                f"no album {folder!r} in {albums_dir}"
                + (f" (albums: {', '.join(known[:20])}{' ...' if len(known) > 20 else ''})"
                   if known else "")
            )
        try:
            return _write_zip(album_fd, folder, entries, Path(zip_path), known)
        finally:
            os.close(album_fd)
    finally:
        os.close(root_fd)


def _write_zip(
    album_fd: int, folder: str, entries: list, zip_path: Path, known: KnownPhotos
) -> int:
    zip_path = Path(os.path.abspath(zip_path))
    if zip_path.is_dir():
        raise ExportError(f"{zip_path} is a folder; give a file name for the ZIP")
    with atomic_writer(zip_path) as raw:
        count = _add_entries(raw, album_fd, folder, entries, known)
    log.info("album_exported", folder=folder, photos=count, zip=str(zip_path))
    return count


def arcname(entry: str) -> str:
    """The member name of an entry: one plain component, valid UTF-8, no backslash.

    Backslashes would be directory separators to Windows unzip tools.
    """
    name = os.fsencode(entry).decode("utf-8", "replace").replace("\\", "_")
    return name.lstrip(".") or "_"


def _add_entries(
    raw: BinaryIO, album_fd: int, folder: str, entries: list, known: KnownPhotos
) -> int:
    count = 0
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED) as zf:
        for name, rec in entries:
            try:
                src_fd = _open_entry(album_fd, name, rec.mode, rec.source, known)
            except (OSError, ExportError) as e:
                log.warning("export_entry_skipped", folder=folder, entry=name, error=str(e))
                continue
            with open(src_fd, "rb") as src:
                st = os.fstat(src.fileno())
                if not stat.S_ISREG(st.st_mode):
                    continue
                info = zipfile.ZipInfo(arcname(name), _zip_time(st.st_mtime))
                info.compress_type = zipfile.ZIP_STORED
                info.external_attr = 0o644 << 16
                with zf.open(info, "w", force_zip64=st.st_size > 2**31) as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            count += 1
    return count
