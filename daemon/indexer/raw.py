"""Reading camera RAW files through the JPEG preview the camera embedded in them.

Every RAW format in use (Canon CR2/CR3, Nikon NEF, Sony ARW, Adobe DNG, Fujifilm RAF,
Olympus ORF, Panasonic RW2, Pentax PEF) carries a full- or near-full-size JPEG preview
rendered by the camera. Faces are found just as well on it as on a demosaiced image, at a
fraction of the cost and memory, and the preview is then handled exactly like any JPEG
(header check, reduced DCT decode). LibRaw (through rawpy) knows where each maker hides
its preview: a parser of ten proprietary containers is exactly where a library beats
hand-written code.

Orientation: the preview is stored the way the sensor saw the scene; the RAW container
says how to turn it (LibRaw's ``flip``). That turn is used when the container has one;
only when it has none does the preview's own EXIF orientation count, so the turn is
applied once. A RAW without any preview falls back to LibRaw's half-size decode (no
interpolation), after checking the sensor size against ``max_pixels``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from daemon.indexer.types import PhotoError

_FLIP_TO_EXIF = {0: 1, 3: 3, 5: 8, 6: 6}
"""LibRaw's ``sizes.flip`` (0, 3 = 180, 5 = 90 counter-clockwise, 6 = 90 clockwise) as the
EXIF orientation that turns the stored image upright."""


@dataclass(frozen=True)
class RawPreview:
    """What a RAW file yields: an embedded JPEG, or pixels when it had no JPEG preview.

    ``orientation`` is the container's turn (EXIF numbering); 1 also when it says none,
    and then an embedded JPEG's own EXIF orientation applies.
    """

    jpeg: bytes | None
    pixels: np.ndarray | None  # BGR uint8, as stored
    orientation: int
    container_turn: bool


def preview(data: bytes, max_pixels: int) -> RawPreview:
    """The largest embedded preview of a RAW file (``data`` is the whole file).

    Raises :class:`PhotoError` with LibRaw's reason for a file it cannot read.
    """
    import rawpy

    try:
        raw = rawpy.imread(io.BytesIO(data))
    except (rawpy.LibRawError, rawpy.NotSupportedError, OSError, ValueError) as e:
        raise PhotoError(f"cannot read the RAW file: {_reason(e)}") from e
    with raw:
        flip = raw.sizes.flip
        orientation = _FLIP_TO_EXIF.get(flip, 1)
        turn = flip in (3, 5, 6)
        try:
            thumb = raw.extract_thumb()
        except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
            return RawPreview(None, _half_size(raw, max_pixels), orientation, turn)
        except (rawpy.LibRawError, OSError, ValueError) as e:
            raise PhotoError(f"cannot read the RAW file's preview: {_reason(e)}") from e
        if thumb.format == rawpy.ThumbFormat.JPEG:
            return RawPreview(bytes(thumb.data), None, orientation, turn)
        pixels = np.asarray(thumb.data)
        if pixels.ndim == 2:
            pixels = np.repeat(pixels[..., None], 3, axis=2)
        if pixels.dtype != np.uint8:  # 16-bit bitmap previews
            pixels = (pixels >> 8).astype(np.uint8)
        return RawPreview(None, np.ascontiguousarray(pixels[..., 2::-1]), orientation, turn)


def _half_size(raw, max_pixels: int) -> np.ndarray:
    """A quick half-size render for a RAW without a preview, refused past ``max_pixels``."""
    import rawpy

    width, height = raw.sizes.raw_width, raw.sizes.raw_height
    if width * height > max_pixels:
        raise PhotoError(
            f"RAW without a preview, of {width}x{height} = {width * height:,} sensor pixels, "
            f"exceeds detection.max_pixels = {max_pixels:,}"
        )
    try:
        # user_flip=0: LibRaw leaves the pixels as stored; the caller turns them once.
        rgb = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8, user_flip=0)
    except (rawpy.LibRawError, OSError, ValueError) as e:
        raise PhotoError(f"RAW without a preview, and it cannot be decoded: {_reason(e)}") from e
    return np.ascontiguousarray(rgb[..., ::-1])


def _reason(e: Exception) -> str:
    """LibRaw's message, readable (rawpy passes it on as bytes)."""
    arg = e.args[0] if e.args else ""
    text = arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)
    text = " ".join(text.split())
    return f"{type(e).__name__}: {text}"[:200] if text else type(e).__name__
