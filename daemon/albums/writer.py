"""Make the album folders on disk match a list of :class:`AlbumPlan` (the entry point).

Layout::

    albums_dir/
      Grandma/IMG_0001~3fa2c1d0.jpg   -> ../../photos/2019/IMG_0001.jpg  (relative symlink)
      person-0007/...
      .facecluster/manifest.json      what this writer created (it removes nothing else)
      .thumbnails/                    see pictures.py

Who does what: :mod:`~daemon.albums.names` names the entries, :mod:`~daemon.albums.dirs`
opens folders without following links, :mod:`~daemon.albums.manifest` records what was
made, :mod:`~daemon.albums.entries` makes one entry, :mod:`~daemon.albums.recognise` tells
ours from a user's, :mod:`~daemon.albums.tree` changes the tree entry by entry,
:mod:`~daemon.albums.reconcile` orders that into phases and :mod:`~daemon.albums.cleanup`
removes folders left empty.

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

import os
from collections.abc import Sequence
from pathlib import Path
from typing import get_args

import structlog

from daemon.albums.dirs import AlbumError, open_root
from daemon.albums.manifest import read_manifest_at, save_manifest
from daemon.albums.names import entry_name, is_plain_name
from daemon.albums.plan import AlbumPlan
from daemon.albums.reconcile import Wanted, reconcile
from daemon.albums.tree import AlbumReport, AlbumTree
from daemon.config import AlbumMode

log = structlog.get_logger(__name__)


def wanted_entries(plans: Sequence[AlbumPlan]) -> Wanted:
    """folder -> entry name -> original, refusing unsafe folder names."""
    want: Wanted = {}
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
    if mode not in get_args(AlbumMode):
        raise AlbumError(f"album mode must be symlink, hardlink or copy, got {mode!r}")
    want = wanted_entries(plans)
    albums_dir = Path(os.path.abspath(albums_dir))
    try:
        albums_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AlbumError(f"cannot use albums folder {albums_dir}: {e.strerror or e}") from e
    root_fd = open_root(albums_dir)
    try:
        tree = AlbumTree(albums_dir, root_fd, mode, read_manifest_at(root_fd))
        try:
            reconcile(tree, want)
        finally:
            save_manifest(root_fd, tree.manifest)  # whatever happened: record what was made
    finally:
        os.close(root_fd)
    log.debug("albums_reconciled", albums_dir=str(albums_dir), **tree.report.__dict__)
    return tree.report
