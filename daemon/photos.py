"""Which files under the watched folders are photos to index, and which are ignored.

One rule set, shared by the one-shot scan and the watcher, so both see the same library.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import structlog

from daemon.config import Config

log = structlog.get_logger(__name__)

PHOTO_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
)
"""Formats OpenCV decodes. HEIC/RAW are not here: OpenCV cannot read them."""

# NAS and desktop metadata folders: Synology's @eaDir holds thumbnails of every photo,
# which would otherwise be indexed as duplicates; QNAP uses .@__thumb; recycle bins hold
# photos the user deleted.
IGNORED_DIRS = frozenset(
    {"@eaDir", "#recycle", "#snapshot", ".@__thumb", "@Recycle", "@Recently-Snapshot",
     "$RECYCLE.BIN", "System Volume Information", "lost+found", ".Trash", ".Trashes",
     ".AppleDouble", ".thumbnails", ".facecluster"}
)
# Files still being written by copy tools, browsers, rsync and editors.
TEMP_SUFFIXES = (".part", ".partial", ".tmp", ".temp", ".crdownload", ".download", "~", ".swp")


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def is_ignored(path: Path, cfg: Config) -> bool:
    """True if ``path`` must never be indexed (whatever its extension).

    Ignored: anything inside the albums or state dir (when they lie inside a watched
    folder), hidden files and folders, temporary/partial files, NAS metadata folders.
    """
    p = Path(os.path.abspath(path))
    if _inside(p, cfg.albums_dir) or _inside(p, cfg.state_dir):
        return True
    root = next((r for r in cfg.watch if _inside(p, r)), None)
    parts = p.relative_to(root).parts if root is not None else p.parts[1:]
    for part in parts:
        if part.startswith(".") or part in IGNORED_DIRS:
            return True
    name = p.name
    return name.startswith("._") or name.lower().endswith(TEMP_SUFFIXES)


def is_photo(path: Path, cfg: Config) -> bool:
    """True if ``path`` has a photo extension and is not ignored."""
    return Path(path).suffix.lower() in PHOTO_EXTENSIONS and not is_ignored(path, cfg)


def walk_photos(roots: Iterable[Path], cfg: Config) -> Iterator[Path]:
    """Yield every photo file under ``roots`` in a stable order.

    Does not follow directory symlinks (a link loop must not hang the scan); unreadable
    folders are logged and skipped.
    """

    def on_error(err: OSError) -> None:
        log.warning("folder_unreadable", path=err.filename, error=err.strerror)

    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root, onerror=on_error):
            here = Path(dirpath)
            dirnames[:] = sorted(
                d for d in dirnames if not is_ignored(here / d, cfg)
            )
            for name in sorted(filenames):
                p = here / name
                if is_photo(p, cfg):
                    yield p
