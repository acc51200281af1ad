"""Export one album as a ZIP file of its photos.

Only the album's own entries are exported - the ones the writer recorded in its
manifest - so a file or symlink planted in an album folder (say, a link to
``/etc/shadow``) never ends up in a ZIP. A symlink entry is read only if the manifest's
recorded original and the file the link leads to are one and the same file, so editing
either the manifest or the link on the share cannot redirect the read.

Members are stored uncompressed (photos are compressed already) under their plain
entry names, never a path, so unpacking the ZIP cannot write outside its target folder.
The ZIP is written to a temporary file beside ``zip_path`` and renamed into place, so a
failed export leaves no half-written file.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
import zipfile
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


def _open_entry(dir_fd: int, name: str, mode: str, source: str) -> int:
    """Open an album entry for reading: our symlink to its original, or our own file."""
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if mode == "symlink":
        if not stat.S_ISLNK(st.st_mode):
            raise ExportError(f"{name}: expected facecluster's link, found something else")
        # Open the original by the recorded path rather than through the link, so a link
        # replaced meanwhile cannot redirect the read; but the manifest lives on the share
        # and anyone who can write there can edit ``source``, so the file opened must also
        # be the one the link leads to, or export would read whatever the service can.
        fd = os.open(source, os.O_RDONLY)
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
    # A copy or hardlink is read as the entry itself: the manifest's source is not used.
    return os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)


def export_zip(albums_dir: Path, folder: str, zip_path: Path) -> int:
    """Write the photos of album ``folder`` to ``zip_path``; returns how many.

    Raises :class:`ExportError` for an unknown or unsafe album; photos that cannot be
    read are logged and left out.
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
            return _write_zip(album_fd, folder, entries, Path(zip_path))
        finally:
            os.close(album_fd)
    finally:
        os.close(root_fd)


def _write_zip(album_fd: int, folder: str, entries: list, zip_path: Path) -> int:
    zip_path = Path(os.path.abspath(zip_path))
    with atomic_writer(zip_path) as raw:
        count = _add_entries(raw, album_fd, folder, entries)
    log.info("album_exported", folder=folder, photos=count, zip=str(zip_path))
    return count


def arcname(entry: str) -> str:
    """The member name of an entry: one plain component, valid UTF-8, no backslash.

    Backslashes would be directory separators to Windows unzip tools.
    """
    name = os.fsencode(entry).decode("utf-8", "replace").replace("\\", "_")
    return name.lstrip(".") or "_"


def _add_entries(raw: BinaryIO, album_fd: int, folder: str, entries: list) -> int:
    count = 0
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED) as zf:
        for name, rec in entries:
            try:
                src_fd = _open_entry(album_fd, name, rec.mode, rec.source)
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
