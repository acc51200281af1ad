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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import structlog

from daemon.albums.dirs import clear_leftovers, exists_at, open_dir, open_root
from daemon.albums.names import MAX_NAME_BYTES, fit_name, short_hash
from daemon.albums.plan import AlbumPlan, FaceRef
from daemon.fsutil import atomic_write
from daemon.indexer.crops import Box, crop_face, crop_side, decode_crop
from daemon.indexer.image import load_reduced

log = structlog.get_logger(__name__)

THUMB_DIR = ".thumbnails"
SIGNATURES_NAME = "signatures.json"
THUMB_SIZE = 256
CELL_SIZE = 128
MONTAGE_FACES = 25
CropSource = Callable[[Sequence[int]], Mapping[int, bytes]]
"""Face ids -> their stored crops (:meth:`daemon.store.Store.face_crops`)."""
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
        if len(os.fsencode(name)) > MAX_NAME_BYTES:
            name = fit_name(folder, f"~{short_hash(folder)}{suffix}")
        names.append(name)
    return names[0], names[1]


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


def load_image(path: Path, max_pixels: int, boxes: Sequence[Box], sizes: Sequence[int]
               ) -> tuple[np.ndarray, float]:
    """The upright photo (BGR) just sharp enough for a crop of each box at its size, and
    its scale to full-resolution boxes (the indexer's loader, for the same boxes)."""
    pairs = zip(boxes, sizes, strict=True)
    shrink = min(crop_side(box) / size for box, size in pairs)
    return load_reduced(path, max_pixels, shrink)


def scaled(box: Box, scale: float) -> Box:
    """A full-resolution box in the coordinates of an image ``scale`` times as large."""
    x, y, w, h = box
    return (x * scale, y * scale, w * scale, h * scale)


def _stored_crops(faces: Sequence[FaceRef], stored: CropSource | None) -> dict[int, np.ndarray]:
    """face id -> THUMB_SIZE crop from the crop store, for the faces that have one."""
    if stored is None or not faces:
        return {}
    try:
        found = stored([f.face_id for f in faces])
    except Exception as e:  # StoreError: the photos can still be decoded
        log.warning("thumbnail_crops_unreadable", error=str(e))
        return {}
    crops = {}
    for fid, data in found.items():
        image = decode_crop(data, THUMB_SIZE)
        if image is not None:
            crops[fid] = image
    return crops


def _crops(faces: Sequence[FaceRef], max_pixels: int, stored: CropSource | None = None
           ) -> dict[int, np.ndarray]:
    """face id -> THUMB_SIZE crop: the stored one, else cut from its photo, loading each
    photo once; unreadable photos are skipped.

    The first face becomes the thumbnail, the others montage cells: each photo is decoded
    only as sharp as the crops taken from it need.
    """
    crops = _stored_crops(faces, stored)
    by_path: dict[Path, list[tuple[FaceRef, int]]] = {}
    for i, f in enumerate(faces):
        if f.face_id not in crops:
            by_path.setdefault(f.path, []).append((f, THUMB_SIZE if i == 0 else CELL_SIZE))
    for path, group in by_path.items():
        try:
            image, scale = load_image(path, max_pixels, [f.box for f, _ in group],
                                      [size for _, size in group])
        except Exception as e:  # PhotoError, OSError, cv2.error: a picture is optional
            log.warning("thumbnail_photo_unreadable", path=str(path), error=str(e))
            continue
        for f, _ in group:
            try:
                crops[f.face_id] = crop_face(image, scaled(f.box, scale), THUMB_SIZE)
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
    crops: CropSource | None = None,
) -> PicturesReport:
    """Bring ``albums_dir/.thumbnails`` up to date with the albums' faces.

    Faces are drawn from ``crops`` (the crop store) where it has them, else cut from
    their photos.

    Raises :class:`~daemon.albums.dirs.AlbumError` if the albums dir or ``.thumbnails``
    cannot be used safely (e.g. ``.thumbnails`` is a symlink); a photo that cannot be read
    only costs its face.
    """
    root_fd = open_root(albums_dir)
    try:
        thumbs_fd, _ = open_dir(root_fd, THUMB_DIR, create=True)
    finally:
        os.close(root_fd)
    try:
        report = _update_pictures(thumbs_fd, plans, max_pixels, montage_faces, crops)
    finally:
        os.close(thumbs_fd)
    log.debug("album_pictures", **report.__dict__)
    return report


def _update_pictures(thumbs_fd: int, plans: Sequence[AlbumPlan], max_pixels: int,
                     montage_faces: int, crops: CropSource | None) -> PicturesReport:
    clear_leftovers(thumbs_fd)
    old = _read_signatures(thumbs_fd)
    new: dict[str, str] = {}
    done = {"written": 0, "kept": 0, "failed": 0}
    for plan in plans:
        if not plan.faces:
            continue
        outcome, sig = _picture_album(thumbs_fd, plan, old.get(plan.folder), max_pixels,
                                      montage_faces, crops)
        done[outcome] += 1
        if sig is not None:
            new[plan.folder] = sig
    removed = _remove_vanished(thumbs_fd, set(old) - set(new))
    _remove_orphans(thumbs_fd, {n for folder in new for n in thumbnail_names(folder)})
    if new != old or not exists_at(thumbs_fd, SIGNATURES_NAME):  # no change, no write
        atomic_write(SIGNATURES_NAME, json.dumps(new, indent=1).encode(), dir_fd=thumbs_fd)
    return PicturesReport(done["written"], done["kept"], removed, done["failed"])


def _picture_album(thumbs_fd: int, plan: AlbumPlan, old_sig: str | None, max_pixels: int,
                   montage_faces: int, stored: CropSource | None
                   ) -> tuple[Literal["written", "kept", "failed"], str | None]:
    """Draw one album's pictures unless they are up to date.

    Returns what happened and the signature to record (None: no pictures to keep).
    """
    chosen = montage_selection(plan.faces, montage_faces)
    sig = _signature(chosen)
    thumb, montage = thumbnail_names(plan.folder)
    if old_sig == sig and exists_at(thumbs_fd, thumb) and exists_at(thumbs_fd, montage):
        return "kept", sig
    crops = _crops(chosen, max_pixels, stored)
    tiles = [crops[f.face_id] for f in chosen if f.face_id in crops]
    try:
        if not tiles:
            raise ValueError("no usable face")
        atomic_write(thumb, _encode(tiles[0]), dir_fd=thumbs_fd)
        atomic_write(montage, _encode(make_montage(tiles)), dir_fd=thumbs_fd)
    except (OSError, ValueError) as e:
        log.error("album_pictures_failed", folder=plan.folder, error=str(e))
        return "failed", old_sig  # keep the old pictures; the changed signature retries
    return "written", sig


def _remove_vanished(thumbs_fd: int, folders: set[str]) -> int:
    """Remove the pictures of albums that are gone; returns how many albums."""
    for folder in sorted(folders):
        for name in thumbnail_names(folder):
            try:
                os.unlink(name, dir_fd=thumbs_fd)
            except FileNotFoundError:
                pass
            except OSError as e:
                log.warning("album_picture_remove_failed", name=name, error=e.strerror)
    return len(folders)
