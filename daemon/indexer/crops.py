"""Face crops: a square around each face, cut while the indexer still holds the decode.

The album pictures (thumbnail, montage) and the web page's faces are drawn from these, so
they never decode a 12 MP photo again. A crop is the whole head with a little shoulder
(:data:`MARGIN` times the box's longer side), upright like the decode it comes from, at
most :data:`CROP_PX` square: smaller when the decode holds fewer pixels for that face,
since enlarging it here would only store blur. Kept as JPEG (~10 KB each).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

CROP_PX = 256
"""The largest picture drawn of a face (the album thumbnail)."""
MARGIN = 1.6
"""Crop side as a multiple of the box's longer side: the whole head, a little shoulder."""
QUALITY = 88
PAD = (40, 40, 40)
"""Where a crop leaves the photo: dark grey, like the montage background."""
Box = tuple[float, float, float, float]  # x, y, width, height in pixels


def crop_side(box: Box) -> float:
    """The side of ``box``'s crop in the box's own pixels."""
    return max(box[2], box[3]) * MARGIN


def crop_face(image: np.ndarray, box: Box, size: int) -> np.ndarray:
    """A square ``size`` x ``size`` crop centred on ``box``, padded where it leaves the image."""
    x, y, w, h = box
    side = max(2, int(round(crop_side(box))))
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
        cv2.BORDER_CONSTANT, value=PAD,
    )
    interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(crop, (size, size), interpolation=interp)


def face_crops(image: np.ndarray, boxes: Sequence[Box]) -> tuple[bytes, ...]:
    """JPEG crops of ``boxes`` (in ``image``'s pixels); b"" for a box that cannot be cut."""
    out = []
    for box in boxes:
        size = max(16, min(CROP_PX, int(round(crop_side(box)))))
        try:
            crop = crop_face(image, box, size)
            ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
        except (ValueError, cv2.error):
            ok = False
        out.append(buf.tobytes() if ok else b"")
    return tuple(out)


def decode_crop(data: bytes, size: int) -> np.ndarray | None:
    """A stored crop as a ``size`` square BGR image, or None when it does not decode."""
    if not data:
        return None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.shape[0] != image.shape[1]:
        return None
    if image.shape[0] == size:
        return image
    interp = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_CUBIC
    return cv2.resize(image, (size, size), interpolation=interp)
