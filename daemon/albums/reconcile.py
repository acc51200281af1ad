"""Reconciling the album tree with the entries wanted, one named phase after another.

The phases, in order: find the stale entries; write ahead the new folders; survey what
is on disk (keep, adopt, or mark to make); write ahead the entries about to be made;
move entries whose album was renamed; remove the stale ones (freeing space); make the
missing ones; drop write-ahead records of entries not made after all; remove the
folders left empty. Write-ahead makes a run killed at any point leave a manifest naming
every folder and entry it may have made, so the next run adopts or removes them.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import NamedTuple

import structlog

from daemon.albums.cleanup import remove_empty_folders
from daemon.albums.dirs import AlbumError, clear_leftovers, exists_at, open_dir
from daemon.albums.manifest import EntryKey, Manifest, ManifestEntry, save_manifest
from daemon.albums.recognise import seen
from daemon.albums.tree import AlbumTree

log = structlog.get_logger(__name__)

Wanted = dict[str, dict[str, Path]]
"""album folder -> entry name -> absolute path of the original."""


class _Todo(NamedTuple):
    """An entry to make: new, or ``replace`` one of ours that is no longer right."""

    folder: str
    name: str
    source: Path
    replace: bool


def reconcile(tree: AlbumTree, want: Wanted) -> None:
    """Make the entries and folders of ``tree`` those of ``want``; counts go to ``tree``."""
    stale = _stale_keys(tree.manifest, want)
    stale_by_source = _by_source(tree.manifest, stale)
    _write_ahead_folders(tree, want)
    folder_fds: dict[str, int] = {}
    try:
        todo = _survey(tree, want, stale, folder_fds)
        before = _write_ahead(tree, todo)
        # Moves first (a relabel renames an album), then removals, which free space.
        rest = _move_renamed(tree, todo, stale, stale_by_source, folder_fds)
        _remove_stale(tree, stale)
        _make_missing(tree, rest, folder_fds)
        _forget_unmade(tree.manifest, before)
    finally:
        for fd in folder_fds.values():
            os.close(fd)
    remove_empty_folders(tree.root_fd, tree.manifest, set(want))


def _stale_keys(manifest: Manifest, want: Wanted) -> set[EntryKey]:
    """Recorded entries no longer wanted where they are, or wanted for another original."""
    return {
        key for key, rec in manifest.entries.items()
        if want.get(key[0], {}).get(key[1]) is None
        or str(want[key[0]][key[1]]) != rec.source
    }


def _by_source(manifest: Manifest, stale: set[EntryKey]) -> dict[str, list[EntryKey]]:
    """original -> its stale entries, in a stable order (candidates for a move)."""
    by_source: dict[str, list[EntryKey]] = {}
    for key in sorted(stale):
        by_source.setdefault(manifest.entries[key].source, []).append(key)
    return by_source


def _write_ahead_folders(tree: AlbumTree, want: Wanted) -> None:
    """Record the folders about to be made before making them.

    A run killed in between then leaves no folder that no later run knows to remove.
    """
    manifest = tree.manifest
    missing = {f for f in want if f not in manifest.folders and not exists_at(tree.root_fd, f)}
    if missing:
        manifest.folders |= missing
        save_manifest(tree.root_fd, manifest)


def _survey(tree: AlbumTree, want: Wanted, stale: set[EntryKey],
            folder_fds: dict[str, int]) -> list[_Todo]:
    """Open (or make) every wanted folder and survey it; returns the entries to make."""
    todo: list[_Todo] = []
    for folder in sorted(want):
        try:
            fd, created = open_dir(tree.root_fd, folder, create=True)
        except (AlbumError, OSError) as e:
            log.error("album_folder_unusable", folder=folder, error=str(e))
            tree.report.errors += len(want[folder])
            continue
        folder_fds[folder] = fd
        clear_leftovers(fd)
        if created:
            tree.manifest.folders.add(folder)
        adopted = _survey_folder(tree, folder, fd, want[folder], stale, todo)
        if adopted and folder not in tree.manifest.folders and set(os.listdir(fd)) <= set(
            want[folder]
        ):
            tree.manifest.folders.add(folder)  # nothing but our entries: a folder we made
    return todo


def _survey_folder(tree: AlbumTree, folder: str, fd: int, entries: dict[str, Path],
                   stale: set[EntryKey], todo: list[_Todo]) -> bool:
    """Keep the right entries, mark the rest to make; whether any entry was adopted."""
    adopted = False
    for name, source in sorted(entries.items()):
        key = (folder, name)
        rec = tree.manifest.entries.get(key)
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            todo.append(_Todo(folder, name, source, False))
            continue
        except OSError as e:
            tree.fail("album_entry_failed", e, entry=f"{folder}/{name}")
            continue
        ours = (rec is not None and rec.source == str(source)
                and tree.recognise.owns(rec, st, fd, name))
        if tree.recognise.matches(st, fd, name, source, rec):
            tree.report.kept += 1
            if not ours or rec.pending:
                # made by an earlier run that died before recording it
                tree.adopt(key, st, source)
                stale.discard(key)
                adopted = True
        elif ours:
            todo.append(_Todo(folder, name, source, True))
        else:
            log.warning("album_entry_conflict", entry=f"{folder}/{name}",
                        reason="a file not made by facecluster has this name")
            tree.report.errors += 1
    return adopted


def _write_ahead(tree: AlbumTree, todo: list[_Todo]) -> dict[EntryKey, ManifestEntry | None]:
    """Record the entries about to be made as pending, save, and return the old records.

    A run killed while making them leaves a manifest that names every entry it may have
    made, so the next run can tell them from a user's files and adopt or remove them.
    """
    entries = tree.manifest.entries
    before: dict[EntryKey, ManifestEntry | None] = {}
    for folder, name, source, _ in todo:
        key = (folder, name)
        old = before[key] = entries.get(key)
        # A symlink is proven by its target; only copies and hardlinks need the original.
        src = None if tree.mode == "symlink" else tree.recognise.source_stat(source)
        source_seen = seen(src) if src else None
        entries[key] = (
            ManifestEntry(str(source), tree.mode, -1, None, pending=True, source_seen=source_seen)
            if old is None else dataclasses.replace(old, pending=True, source_seen=source_seen)
        )
    if todo:
        save_manifest(tree.root_fd, tree.manifest)
    return before


def _move_renamed(tree: AlbumTree, todo: list[_Todo], stale: set[EntryKey],
                  stale_by_source: dict[str, list[EntryKey]],
                  folder_fds: dict[str, int]) -> list[_Todo]:
    """Move stale entries of the same original to where they are now wanted.

    Returns the entries still to make.
    """
    rest: list[_Todo] = []
    for item in todo:
        folder, name, source, replace = item
        olds = [k for k in stale_by_source.get(str(source), []) if k in stale]
        if not replace and olds and tree.move(olds[0], folder_fds[folder], folder, name, source):
            stale.discard(olds[0])
        else:
            rest.append(item)
    return rest


def _remove_stale(tree: AlbumTree, stale: set[EntryKey]) -> None:
    for key in sorted(stale):
        if key in tree.manifest.entries:
            tree.remove(*key)


def _make_missing(tree: AlbumTree, todo: list[_Todo], folder_fds: dict[str, int]) -> None:
    """Make the entries; after the disk fills up, only count them."""
    for folder, name, source, replace in todo:
        if tree.report.no_space:
            tree.report.errors += 1
            continue
        if tree.mode != "symlink" and tree.recognise.source_stat(source) is None:
            log.error("album_source_missing", entry=f"{folder}/{name}", source=str(source))
            tree.report.errors += 1
            continue
        try:
            tree.create(folder_fds[folder], folder, name, source, replace)
            tree.report.added += 1
        except OSError as e:
            tree.fail("album_entry_failed", e, entry=f"{folder}/{name}", source=str(source))


def _forget_unmade(manifest: Manifest, before: dict[EntryKey, ManifestEntry | None]) -> None:
    """Put back the records of entries written ahead but not made after all."""
    for key, old in before.items():
        rec = manifest.entries.get(key)
        if rec is not None and rec.pending:
            if old is None:
                del manifest.entries[key]
            else:
                manifest.entries[key] = old
