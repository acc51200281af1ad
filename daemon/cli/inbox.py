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
import zlib
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


def _unpack(zf: zipfile.ZipFile, info: zipfile.ZipInfo, staging: Path) -> str | None:
    """Unpack one entry into ``staging``; the reason it was skipped, or None."""
    rel = _safe_member(info.filename)
    if rel is None:
        return "path leaves the folder"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link"
    if rel.suffix.lower() not in PHOTO_EXTENSIONS:
        return "not a photo"
    if info.compress_size and info.file_size / info.compress_size > MAX_RATIO:
        return "suspicious compression ratio"
    dest = staging.joinpath(*rel.parts)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with zf.open(info) as src, open(dest, "xb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    except (EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError) as e:
        # A header that lies about a size (EOFError: the data ends first), a bad CRC,
        # an unknown compression method, a password: this entry only, never half of it.
        dest.unlink(missing_ok=True)
        detail = str(e) or "its data ends before the size its header gives"
        return f"damaged or unreadable in the archive ({detail})"
    return None


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
                reason = _unpack(zf, info, staging)
                if reason is None:
                    count += 1
                else:
                    skipped.append(f"{info.filename}: {reason}")
            # Appear at once, complete: the watcher never sees a half-unpacked folder.
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    for s in skipped:
        log.warning("import_skipped", entry=s)
    log.info("imported", archive=str(archive), folder=str(target), photos=count)
    return ImportReport(target, count, tuple(skipped))
