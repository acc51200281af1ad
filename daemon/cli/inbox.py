"""``facecluster import ARCHIVE.zip``: add the photos of a ZIP archive to the library.

The old web apps took uploads of single photos or ZIP archives. Here single photos are
simply copied into a watched folder; an archive is unpacked by this module into a new
folder inside the first watched folder, and the service (or the next scan) picks the
photos up like any other. Existing files are never overwritten, and entries that would
land outside the target folder (absolute paths, ``..``, links) are refused.
"""

from __future__ import annotations

import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import structlog

from daemon.library.photos import PHOTO_EXTENSIONS

log = structlog.get_logger(__name__)

MAX_TOTAL_BYTES = 50 * 1024**3
"""Refuse archives that claim more than this uncompressed (a ZIP bomb guard)."""
MAX_RATIO = 200
"""Refuse entries compressed more than this much: photos do not compress like that."""


class ArchiveError(ValueError):
    """The archive cannot be imported (unreadable, bomb-like, or target exists)."""


@dataclass(frozen=True)
class ImportReport:
    """What an import did."""

    folder: Path
    photos: int
    skipped: tuple[str, ...]
    """Archive entries not imported, with the reason."""


def _safe_member(name: str) -> PurePosixPath | None:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or any(part in ("", "..") for part in p.parts) or not p.parts:
        return None
    if p.parts[0].endswith(":"):  # a Windows drive letter
        return None
    return p


def import_zip(archive: Path, watch_root: Path) -> ImportReport:
    """Unpack the photos of ``archive`` into ``watch_root/imported/<archive name>/``."""
    target = watch_root / "imported" / archive.stem
    if target.exists():
        raise ArchiveError(f"{target} already exists: was {archive.name} imported before?")
    try:
        zf = zipfile.ZipFile(archive)
    except (OSError, zipfile.BadZipFile) as e:
        raise ArchiveError(f"cannot read {archive}: {e}") from e
    skipped: list[str] = []
    count = 0
    with zf:
        infos = zf.infolist()
        if sum(i.file_size for i in infos) > MAX_TOTAL_BYTES:
            raise ArchiveError(f"{archive} claims more than {MAX_TOTAL_BYTES} bytes unpacked")
        staging = target.with_name(f".{target.name}.importing")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            for info in infos:
                if info.is_dir():
                    continue
                rel = _safe_member(info.filename)
                mode = info.external_attr >> 16
                if rel is None:
                    skipped.append(f"{info.filename}: path leaves the folder")
                elif stat.S_ISLNK(mode):
                    skipped.append(f"{info.filename}: symbolic link")
                elif rel.suffix.lower() not in PHOTO_EXTENSIONS:
                    skipped.append(f"{info.filename}: not a photo")
                elif info.compress_size and info.file_size / info.compress_size > MAX_RATIO:
                    skipped.append(f"{info.filename}: suspicious compression ratio")
                else:
                    dest = staging.joinpath(*rel.parts)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(dest, "xb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                    count += 1
            # Appear at once, complete: the watcher never sees a half-unpacked folder.
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    for s in skipped:
        log.warning("import_skipped", entry=s)
    log.info("imported", archive=str(archive), folder=str(target), photos=count)
    return ImportReport(target, count, tuple(skipped))
