"""Which files under the watched folders are photos to index, and which are ignored.

One rule set, shared by the one-shot scan and the watcher, so both see the same library.

A camera set to RAW+JPEG writes two files per shot, ``IMG_0001.CR2`` and
``IMG_0001.JPG``: the same faces twice. The shot counts once, as its JPEG (or HEIC): a
RAW with such a twin beside it (same folder, same stem, extension in any case) is
*shadowed*, neither listed by :func:`walk_photos` nor kept by the store's sync
(:func:`is_wanted`). When the twin goes, the next scan finds the RAW and reads it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import structlog

from daemon.config import Config

log = structlog.get_logger(__name__)

JPEG_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe"})
HEIF_EXTENSIONS = frozenset({".heic", ".heif", ".hif", ".avif"})
RAW_EXTENSIONS = frozenset(
    {".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".dng", ".raf", ".orf",
     ".rw2", ".pef", ".srw", ".x3f", ".3fr", ".iiq", ".rwl", ".erf", ".mrw", ".kdc", ".dcr"}
)
"""Camera RAW files, read through their embedded JPEG preview (daemon.indexer.raw)."""
PHOTO_EXTENSIONS = (
    JPEG_EXTENSIONS
    | HEIF_EXTENSIONS
    | RAW_EXTENSIONS
    | frozenset({".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
)
"""Everything the indexer reads. Videos (a Live Photo's .MOV, .MP4) are not photos and are
passed over without a word."""
TWIN_EXTENSIONS = JPEG_EXTENSIONS | frozenset({".heic", ".heif", ".hif"})
"""What a camera writes beside a RAW for the same shot (JPEG, or HEIF on newer bodies)."""

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


def is_under(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or below it."""
    return path == folder or path.is_relative_to(folder)


def is_ignored(path: Path, cfg: Config) -> bool:
    """True if ``path`` must never be indexed (whatever its extension).

    Ignored: anything inside the albums or state dir (when they lie inside a watched
    folder), hidden files and folders, temporary/partial files, NAS metadata folders.
    """
    p = Path(os.path.abspath(path))
    if is_under(p, cfg.albums_dir) or is_under(p, cfg.state_dir):
        return True
    root = next((r for r in cfg.watch if is_under(p, r)), None)
    parts = p.relative_to(root).parts if root is not None else p.parts[1:]
    for part in parts:
        if part.startswith(".") or part in IGNORED_DIRS:
            return True
    name = p.name
    return name.startswith("._") or name.lower().endswith(TEMP_SUFFIXES)


def is_photo(path: Path, cfg: Config) -> bool:
    """True if ``path`` has a photo extension and is not ignored."""
    return Path(path).suffix.lower() in PHOTO_EXTENSIONS and not is_ignored(path, cfg)


def _twin_names(path: Path) -> Iterator[str]:
    stem = path.stem
    for ext in sorted(TWIN_EXTENSIONS):
        yield stem + ext
        yield stem + ext.upper()


def raw_twin(path: Path) -> Path | None:
    """The JPEG/HEIC beside a RAW file that stands for the same shot, if there is one.

    None for a file that is not a RAW. Looks at the file system (a few ``stat`` calls).
    """
    path = Path(path)
    if path.suffix.lower() not in RAW_EXTENSIONS:
        return None
    for name in _twin_names(path):
        twin = path.with_name(name)
        if twin.is_file():
            return twin
    return None


def raw_names(path: Path) -> list[Path]:
    """The paths a RAW of the same shot as JPEG/HEIC ``path`` would have (not looked up).

    Empty for a file that cannot be a RAW's twin. Used to forget a RAW indexed before its
    JPEG arrived (a card import copies IMG_1.CR2 before IMG_1.JPG).
    """
    path = Path(path)
    if path.suffix.lower() not in TWIN_EXTENSIONS:
        return []
    exts = sorted(RAW_EXTENSIONS)
    return [path.with_name(path.stem + e) for e in exts + [e.upper() for e in exts]]


def is_wanted(path: Path, cfg: Config) -> bool:
    """True if ``path`` is a photo to keep in the store: :func:`is_photo` and not a RAW
    shadowed by its JPEG twin. Looks at the file system, unlike :func:`is_photo`."""
    return is_photo(path, cfg) and raw_twin(path) is None


def _twin_stems(names: Iterable[str]) -> set[str]:
    """Stems of a folder's files that can stand for a RAW's shot."""
    return {n.rsplit(".", 1)[0] for n in names if Path(n).suffix.lower() in TWIN_EXTENSIONS}


def walk_photos(roots: Iterable[Path], cfg: Config) -> Iterator[Path]:
    """Yield every photo file under ``roots`` in a stable order.

    Does not follow directory symlinks (a link loop must not hang the scan); unreadable
    folders are logged and skipped. A RAW whose JPEG twin is in the same folder is left
    out (the pair is one shot).
    """

    def on_error(err: OSError) -> None:
        log.warning("folder_unreadable", path=err.filename, error=err.strerror)

    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root, onerror=on_error):
            here = Path(dirpath)
            dirnames[:] = sorted(
                d for d in dirnames if not is_ignored(here / d, cfg)
            )
            twins = _twin_stems(filenames)
            for name in sorted(filenames):
                p = here / name
                if not is_photo(p, cfg):
                    continue
                if p.suffix.lower() in RAW_EXTENSIONS and p.stem in twins:
                    continue  # RAW+JPEG of one shot: the JPEG stands for it
                yield p
