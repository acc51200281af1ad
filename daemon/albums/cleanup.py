"""Removing the album folders this writer created once they are unwanted and empty.

A folder holding only litter of a NAS or desktop (Synology ``@eaDir``, QNAP ``.@__thumb``,
``.DS_Store``, ``Thumbs.db``) or our own temporary files counts as empty; anything else
in it is a user's and keeps the folder.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Set

import structlog

from daemon.albums.dirs import AlbumError, open_dir
from daemon.albums.manifest import Manifest
from daemon.fsutil import TMP_PREFIX

log = structlog.get_logger(__name__)

_LITTER = {"@eaDir", ".@__thumb", ".DS_Store", "Thumbs.db", "desktop.ini", ".AppleDouble"}


def is_litter(name: str) -> bool:
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
        if not names or not all(is_litter(n) for n in names):
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


def _remove_folder(root_fd: int, folder: str) -> bool:
    """Remove ``folder`` if it is empty but for litter; whether it is gone."""
    for attempt in (1, 2):
        try:
            os.rmdir(folder, dir_fd=root_fd)  # rmdir never follows a symlink
        except FileNotFoundError:
            pass
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                log.warning("album_folder_remove_failed", folder=folder, error=e.strerror)
            elif attempt == 1 and _clear_litter(root_fd, folder):
                continue
            else:
                log.info("album_folder_kept", folder=folder, reason="holds files of a user")
            return False
        return True
    return False


def remove_empty_folders(root_fd: int, manifest: Manifest, wanted: Set[str]) -> None:
    """Remove the folders ``manifest`` records that are neither wanted nor hold our entries."""
    in_use = {folder for folder, _ in manifest.entries}
    for folder in sorted(manifest.folders - wanted - in_use):
        if _remove_folder(root_fd, folder):
            manifest.folders.discard(folder)
