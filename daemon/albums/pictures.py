"""A face thumbnail and a montage of faces per album.

For album ``Grandma`` this writes ``albums_dir/.thumbnails/Grandma.jpg`` (the album's
best face, 256x256) and ``albums_dir/.thumbnails/Grandma.montage.jpg`` (a grid of up to
25 faces, 128x128 each), like the montage tools of face_recognition and the old
FaceCluster web app. The folder is hidden so photo viewers and ZIP exports of an album
never show these as photos. A folder name too long for the suffix is shortened and
tagged with a hash (:func:`thumbnail_names`).

The best face ranks highest on :func:`face_quality`: detector score, times size (a box
of 160 px or more counts fully), times frontalness (the nose midway between the eyes,
when landmarks are known). The montage takes faces in that order, one per photo first so
it shows the person in many photos, then fills up.

Pictures are regenerated only when the chosen faces change: a signature per album is
kept in ``.thumbnails/signatures.json``. Pictures of albums that vanished are removed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import structlog

from daemon.albums.plan import AlbumPlan, FaceRef
from daemon.albums.writer import (
    AlbumError,
    clear_leftovers,
    exists_at,
    open_dir,
)
from daemon.fsutil import atomic_write

log = structlog.get_logger(__name__)

THUMB_DIR = ".thumbnails"
SIGNATURES_NAME = "signatures.json"
THUMB_SIZE = 256
CELL_SIZE = 128
MONTAGE_FACES = 25
_MARGIN = 1.6
"""Crop side as a multiple of the box's longer side: the whole head, a little shoulder."""
_VERSION = 1
"""Bump when the picture layout changes, so every album's pictures are redrawn."""


@dataclass(frozen=True)
class PicturesReport:
    """What one pass over the albums' pictures did (counted per album)."""

    written: int = 0
    kept: int = 0
    removed: int = 0
    errors: int = 0


def face_quality(face: FaceRef) -> float:
    """How good ``face`` is as the album's picture: score x size x frontalness."""
    _, _, w, h = face.box
    size = min(1.0, max(0.0, min(w, h)) / 160.0)
    frontal = 1.0
    if len(face.landmarks) >= 3:
        (rx, _), (lx, _), (nx, _) = face.landmarks[:3]
        eyes = abs(lx - rx) or 1.0
        frontal = max(0.0, 1.0 - abs(nx - (rx + lx) / 2) / eyes)
    return float(face.score) * size * (0.5 + 0.5 * frontal)


def rank_faces(faces: Sequence[FaceRef]) -> list[FaceRef]:
    """``faces`` best first (ties broken by face id, so the choice is stable)."""
    return sorted(faces, key=lambda f: (-face_quality(f), f.face_id))


def montage_selection(faces: Sequence[FaceRef], limit: int = MONTAGE_FACES) -> list[FaceRef]:
    """Up to ``limit`` faces, best first, one per photo before any photo's second face."""
    ranked = rank_faces(faces)
    seen: set[Path] = set()
    first, more = [], []
    for f in ranked:
        (more if f.path in seen else first).append(f)
        seen.add(f.path)
    return (first + more)[:limit]


def thumbnail_names(folder: str) -> tuple[str, str]:
    """File names of ``folder``'s thumbnail and montage inside ``.thumbnails``."""
    names = []
    for suffix in (".jpg", ".montage.jpg"):
        name = folder + suffix
        if len(os.fsencode(name)) > 255:
            tag = "~" + hashlib.sha1(os.fsencode(folder)).hexdigest()[:8] + suffix
            head = folder
            while len(os.fsencode(head + tag)) > 255:
                head = head[:-1]
            name = head + tag
        names.append(name)
    return names[0], names[1]


def thumbnail_paths(albums_dir: Path, folder: str) -> tuple[Path, Path]:
    """Where ``folder``'s thumbnail and montage are (they may not exist)."""
    thumb, montage = thumbnail_names(folder)
    return albums_dir / THUMB_DIR / thumb, albums_dir / THUMB_DIR / montage


def crop_face(image: np.ndarray, box: tuple[float, float, float, float], size: int) -> np.ndarray:
    """A square ``size`` x ``size`` crop centred on ``box``, padded where it leaves the image."""
    x, y, w, h = box
    side = max(2, int(round(max(w, h) * _MARGIN)))
    left = int(round(x + w / 2 - side / 2))
    top = int(round(y + h / 2 - side / 2))
    ih, iw = image.shape[:2]
    x0, y0 = max(0, left), max(0, top)
    x1, y1 = min(iw, left + side), min(ih, top + side)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"face box {box} lies outside the {iw}x{ih} image")
    crop = image[y0:y1, x0:x1]
    crop = cv2.copyMakeBorder(
        crop, y0 - top, top + side - y1, x0 - left, left + side - x1,
        cv2.BORDER_CONSTANT, value=(40, 40, 40),
    )
    interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(crop, (size, size), interpolation=interp)


def make_montage(crops: Sequence[np.ndarray], cell: int = CELL_SIZE) -> np.ndarray:
    """The crops in a near-square grid of ``cell``-pixel tiles on a dark background."""
    if not crops:
        raise ValueError("a montage needs at least one face")
    cols = math.ceil(math.sqrt(len(crops)))
    rows = math.ceil(len(crops) / cols)
    sheet = np.full((rows * cell, cols * cell, 3), 40, np.uint8)
    for i, crop in enumerate(crops):
        r, c = divmod(i, cols)
        tile = cv2.resize(crop, (cell, cell), interpolation=cv2.INTER_AREA)
        sheet[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = tile
    return sheet


def load_image(path: Path, max_pixels: int) -> np.ndarray:
    """The upright full-resolution photo as BGR (the indexer's loader, for the same boxes)."""
    from daemon.indexer import load_upright  # imported late: it pulls in the engines

    return load_upright(path, max_pixels)


def _crops(faces: Sequence[FaceRef], max_pixels: int) -> dict[int, np.ndarray]:
    """face id -> THUMB_SIZE crop, loading each photo once; unreadable photos are skipped."""
    by_path: dict[Path, list[FaceRef]] = {}
    for f in faces:
        by_path.setdefault(f.path, []).append(f)
    crops: dict[int, np.ndarray] = {}
    for path, group in by_path.items():
        try:
            image = load_image(path, max_pixels)
        except Exception as e:  # PhotoError, OSError, cv2.error: a picture is optional
            log.warning("thumbnail_photo_unreadable", path=str(path), error=str(e))
            continue
        for f in group:
            try:
                crops[f.face_id] = crop_face(image, f.box, THUMB_SIZE)
            except (ValueError, cv2.error) as e:
                log.warning("thumbnail_face_unusable", face=f.face_id, error=str(e))
    return crops


def _signature(chosen: Sequence[FaceRef]) -> str:
    parts = [_VERSION, THUMB_SIZE, CELL_SIZE]
    parts += [[f.face_id, os.fsencode(str(f.path)).hex(), list(f.box)] for f in chosen]
    return hashlib.sha1(json.dumps(parts).encode()).hexdigest()


def _encode(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def _remove_orphans(thumbs_fd: int, keep: set[str]) -> None:
    """Remove pictures of no current album.

    A run killed after writing an album's pictures but before saving the signatures
    leaves pictures no signature names, which the removal of vanished albums never sees.
    """
    for name in os.listdir(thumbs_fd):
        if not name.endswith(".jpg") or name in keep:
            continue
        try:
            if stat.S_ISREG(os.stat(name, dir_fd=thumbs_fd, follow_symlinks=False).st_mode):
                os.unlink(name, dir_fd=thumbs_fd)
                log.info("album_picture_orphan_removed", name=name)
        except OSError as e:
            log.warning("album_picture_remove_failed", name=name, error=e.strerror)


def _read_signatures(dir_fd: int) -> dict[str, str]:
    try:
        fd = os.open(SIGNATURES_NAME, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError:
        return {}
    with open(fd, "rb") as f:
        try:
            data = json.loads(f.read())
        except (ValueError, UnicodeDecodeError):
            return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def write_pictures(
    albums_dir: Path,
    plans: Sequence[AlbumPlan],
    max_pixels: int = 100_000_000,
    *,
    montage_faces: int = MONTAGE_FACES,
) -> PicturesReport:
    """Bring ``albums_dir/.thumbnails`` up to date with the albums' faces.

    Raises :class:`AlbumError` if the albums dir or ``.thumbnails`` cannot be used safely
    (e.g. ``.thumbnails`` is a symlink); a photo that cannot be read only costs its face.
    """
    written = kept = removed = errors = 0
    try:
        root_fd = os.open(albums_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise AlbumError(f"cannot use albums folder {albums_dir}: {e.strerror or e}") from e
    try:
        thumbs_fd, _ = open_dir(root_fd, THUMB_DIR, create=True)
    finally:
        os.close(root_fd)
    try:
        clear_leftovers(thumbs_fd)
        old = _read_signatures(thumbs_fd)
        new: dict[str, str] = {}
        for plan in plans:
            if not plan.faces:
                continue
            chosen = montage_selection(plan.faces, montage_faces)
            sig = _signature(chosen)
            thumb, montage = thumbnail_names(plan.folder)
            if old.get(plan.folder) == sig and exists_at(thumbs_fd, thumb) and exists_at(
                thumbs_fd, montage
            ):
                new[plan.folder] = sig
                kept += 1
                continue
            crops = _crops(chosen, max_pixels)
            tiles = [crops[f.face_id] for f in chosen if f.face_id in crops]
            try:
                if not tiles:
                    raise ValueError("no usable face")
                atomic_write(thumb, _encode(tiles[0]), dir_fd=thumbs_fd)
                atomic_write(montage, _encode(make_montage(tiles)), dir_fd=thumbs_fd)
            except (OSError, ValueError) as e:
                log.error("album_pictures_failed", folder=plan.folder, error=str(e))
                errors += 1
                if plan.folder in old:  # keep the old pictures; the changed signature retries
                    new[plan.folder] = old[plan.folder]
                continue
            new[plan.folder] = sig
            written += 1
        for folder in sorted(set(old) - set(new)):
            for name in thumbnail_names(folder):
                try:
                    os.unlink(name, dir_fd=thumbs_fd)
                except FileNotFoundError:
                    pass
                except OSError as e:
                    log.warning("album_picture_remove_failed", name=name, error=e.strerror)
            removed += 1
        _remove_orphans(thumbs_fd, {n for folder in new for n in thumbnail_names(folder)})
        if new != old or not exists_at(thumbs_fd, SIGNATURES_NAME):  # no change, no write
            atomic_write(SIGNATURES_NAME, json.dumps(new, indent=1).encode(), dir_fd=thumbs_fd)
    finally:
        os.close(thumbs_fd)
    report = PicturesReport(written, kept, removed, errors)
    log.debug("album_pictures", **report.__dict__)
    return report
