"""One picture per question: side A's faces on the left, side B's on the right.

A terminal cannot show faces, so ``facecluster review`` writes this picture and prints
its path; any image viewer shows it (and refreshes it when the next question replaces
it). A face whose photo cannot be read is drawn as an empty grey tile, never an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
import structlog

from daemon.albums.pictures import crop_face, load_image, scaled
from daemon.fsutil import atomic_write
from daemon.indexer.crops import decode_crop
from daemon.store import FaceRecord

log = structlog.get_logger(__name__)

TILE = 192
"""Pixels per face tile: large enough to tell two children apart."""
GAP = 24
"""Dark band between the two sides."""
_GREY = 40


def face_tiles(faces: Sequence[FaceRecord], max_pixels: int, size: int = TILE,
               stored: Mapping[int, bytes] | None = None) -> list[np.ndarray]:
    """A ``size`` x ``size`` crop of each face, in order (grey where unreadable).

    ``stored`` (face id -> the crop store's JPEG) spares decoding each face's whole photo;
    a face without one (an older store) is cut from its photo.
    """
    out = []
    for f in faces:
        tile = decode_crop((stored or {}).get(f.id, b""), size)
        if tile is not None:
            out.append(tile)
            continue
        try:
            image, scale = load_image(f.path, max_pixels, [f.box], [size])
            out.append(crop_face(image, scaled(f.box, scale), size))
        except Exception as e:  # noqa: BLE001 - PhotoError, OSError, cv2.error: optional
            log.warning("review_face_unreadable", face=f.id, path=str(f.path), error=str(e))
            out.append(np.full((size, size, 3), _GREY, np.uint8))
    return out


def _column(tiles: Sequence[np.ndarray], rows: int, size: int) -> np.ndarray:
    """Tiles in two columns, top to bottom, padded to ``rows`` rows."""
    sheet = np.full((rows * size, 2 * size, 3), _GREY, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, 2)
        sheet[r * size:(r + 1) * size, c * size:(c + 1) * size] = tile
    return sheet


def side_by_side(left: Sequence[np.ndarray], right: Sequence[np.ndarray],
                 size: int = TILE) -> np.ndarray:
    """Both sides' tiles, two columns each, with a band between them."""
    rows = max(1, (len(left) + 1) // 2, (len(right) + 1) // 2)
    band = np.full((rows * size, GAP, 3), 15, np.uint8)
    return np.hstack([_column(left, rows, size), band, _column(right, rows, size)])


def write_question_picture(path: Path, a: Sequence[FaceRecord], b: Sequence[FaceRecord],
                           max_pixels: int, stored: Mapping[int, bytes] | None = None) -> Path:
    """Write the picture of one question as a JPEG at ``path`` (atomically)."""
    sheet = side_by_side(face_tiles(a, max_pixels, stored=stored),
                         face_tiles(b, max_pixels, stored=stored))
    ok, data = cv2.imencode(".jpg", sheet, [cv2.IMWRITE_JPEG_QUALITY, 88])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 BGR image
        raise OSError(f"could not encode {path}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(Path(path), data.tobytes())
    return Path(path)
