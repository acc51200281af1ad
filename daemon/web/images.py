"""Face crops and montages for the page, drawn by the album pictures code, cached on disk.

A crop is cut from the original photo once and kept as
``state_dir/web-cache/faces/<id // 1000>/<id>.jpg``; face ids are never reused, so a
crop never goes stale (a re-indexed photo gets new face ids). A montage is keyed by the
ids of the faces it shows. The cache is derived: deleting it only costs redrawing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import structlog

from daemon.albums.pictures import crop_face, load_image, make_montage, scaled
from daemon.fsutil import atomic_write
from daemon.store import FaceRecord

log = structlog.get_logger(__name__)

CACHE_DIR = "web-cache"
CROP_SIZE = 160
MONTAGE_CELL = 80


class NoPicture(Exception):
    """The photo behind a face cannot be read or cropped (the page shows no picture)."""


def _encode(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise NoPicture("JPEG encoding failed")
    return buf.tobytes()


class FaceImages:
    """Crops and montages under ``state_dir/web-cache``."""

    def __init__(self, state_dir: Path, max_pixels: int) -> None:
        self.root = state_dir / CACHE_DIR
        self.max_pixels = max_pixels

    def _crop_path(self, face_id: int) -> Path:
        return self.root / "faces" / str(face_id // 1000) / f"{face_id}.jpg"

    def _store(self, path: Path, data: bytes) -> None:
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            atomic_write(path, data, durable=False)  # a lost crop is only redrawn
        except OSError as e:
            log.warning("web_cache_write_failed", path=str(path), error=str(e))

    def _crop(self, face: FaceRecord, real_path: str) -> np.ndarray:
        try:
            image, scale = load_image(Path(real_path), self.max_pixels, [face.box], [CROP_SIZE])
            return crop_face(image, scaled(face.box, scale), CROP_SIZE)
        except Exception as e:  # PhotoError, OSError, cv2.error, ValueError: show none
            raise NoPicture(f"face {face.id}: {e}") from e

    def crop(self, face: FaceRecord, real_path: str) -> bytes:
        """JPEG of one face (``real_path``: its photo, already checked to be allowed)."""
        cached = self._crop_path(face.id)
        try:
            return cached.read_bytes()
        except OSError:
            pass
        data = _encode(self._crop(face, real_path))
        self._store(cached, data)
        return data

    def montage(self, faces: Sequence[tuple[FaceRecord, str]]) -> bytes:
        """JPEG grid of these faces (each with its checked photo path)."""
        key = hashlib.sha1(",".join(str(f.id) for f, _ in faces).encode()).hexdigest()
        cached = self.root / "montages" / f"{key}.jpg"
        try:
            return cached.read_bytes()
        except OSError:
            pass
        tiles = []
        for face, real in faces:
            try:
                tile = cv2.imdecode(np.frombuffer(self.crop(face, real), np.uint8),
                                    cv2.IMREAD_COLOR)
            except NoPicture as e:
                log.warning("web_montage_face_skipped", error=str(e))
                continue
            if tile is not None:
                tiles.append(tile)
        if not tiles:
            raise NoPicture("no face of this person could be drawn")
        data = _encode(make_montage(tiles, MONTAGE_CELL))
        self._store(cached, data)
        return data
