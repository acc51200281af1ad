"""Reading HEIF-family photos: HEIC (iPhones, newer Android and cameras) and AVIF.

Both are ISO base media files (an ``ftyp`` box, a ``meta`` box describing the images,
then the coded data). Codecs are where a library beats hand-written code: HEIC's HEVC
data is decoded by FFmpeg (PyAV; :mod:`.heifbox` finds it, :mod:`.heifdecode` decodes
it), with pillow-heif (libheif + libde265) for every layout that path does not model;
AVIF by Pillow's own libavif plugin. The libraries parse the container without decoding
pixels, so the stored size is known, and checked against ``max_pixels``, before any
pixel buffer exists.

Orientation, applied once and only once. HEIF stores rotation and mirroring as ``irot``
and ``imir`` properties of the image, and the specification says they must be applied;
phones also write an EXIF orientation that describes the *same* turn, so applying both
rotates twice. So:

- HEIC: libheif (or :mod:`.heifdecode`, the same way) applies ``irot``/``imir`` while
  decoding; the EXIF tag is then ignored.
  Only a file without those properties (some converters record the turn in EXIF alone)
  has its EXIF orientation honoured.
- AVIF: Pillow does not turn the pixels; it reports ``irot``/``imir`` as the EXIF
  orientation (overriding the file's own tag), which :mod:`.image` applies once.

Bursts and image collections give their primary image; 10-bit images come out as
8 bits. Decoding uses one thread and skips thumbnails, depth and auxiliary images:
workers are processes, one per core.
"""

from __future__ import annotations

import io
import struct

import cv2
import numpy as np
import structlog

from daemon.indexer import heifdecode
from daemon.indexer.heifbox import primary_layout
from daemon.indexer.types import PhotoError

log = structlog.get_logger(__name__)

HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
AVIF_BRANDS = frozenset({b"avif", b"avis"})
# Generic HEIF brands: the coding brand then decides between HEIC and AVIF (a compatible
# brand list such as "mif1 heic" or "mif1 avif"); Canon's CR3 ("crx") is a RAW instead.
_GENERIC_BRANDS = frozenset({b"mif1", b"msf1", b"mif2", b"miaf"})
_TRANSFORM_BOXES = (b"irot", b"imir")

_configured = False


def heif_kind(data: bytes) -> str | None:
    """``"heif"`` or ``"avif"`` when ``data`` starts with a HEIF-family ``ftyp`` box, else None.

    A QuickTime/MP4 video (brands ``qt``, ``isom``, ``mp41`` ...) is not a photo: None.
    """
    if len(data) < 16 or data[4:8] != b"ftyp":
        return None
    (size,) = struct.unpack_from(">I", data, 0)
    size = min(size if size >= 16 else 16, len(data), 4096)
    brands = {data[8:12]} | {data[i : i + 4] for i in range(16, size - 3, 4)}
    if brands & AVIF_BRANDS:
        return "avif"
    if brands & HEIC_BRANDS or data[8:12] in _GENERIC_BRANDS:
        return "heif"
    return None


def video_brand(data: bytes) -> str | None:
    """The major brand of an ISO/QuickTime video (a Live Photo's MOV, an MP4), else None."""
    if len(data) >= 12 and data[4:8] == b"ftyp" and heif_kind(data) is None:
        return data[8:12].decode("latin-1").strip()
    return None


def _configure() -> None:
    """Set the libraries up for a worker: one thread, no side images, HEIF opener once."""
    global _configured
    if _configured:
        return
    import pillow_heif
    from PIL import AvifImagePlugin, Image

    # Pillow's own bomb check would warn, or refuse with its fixed limit; detection's
    # max_pixels is checked right after the probe instead, one rule for every format.
    Image.MAX_IMAGE_PIXELS = None
    pillow_heif.options.DECODE_THREADS = 1
    pillow_heif.options.THUMBNAILS = False
    pillow_heif.options.DEPTH_IMAGES = False
    pillow_heif.options.AUX_IMAGES = False
    AvifImagePlugin.DEFAULT_MAX_THREADS = 1
    _configured = True


def _meta_has_transform(data: bytes) -> bool:
    """Whether the top-level ``meta`` box holds an ``irot`` or ``imir`` property.

    Only the ``meta`` box is searched (it is small and comes first), never the coded
    pixels, where the four letters could occur by chance.
    """
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        if size == 1 and pos + 16 <= len(data):
            (size,) = struct.unpack_from(">Q", data, pos + 8)
        if kind == b"meta":
            body = data[pos : pos + size] if size else data[pos:]
            return any(box in body for box in _TRANSFORM_BOXES)
        if size < 8:
            return False
        pos += size
    return False


def _exif_orientation(exif: bytes | None) -> int:
    """The orientation tag of a raw EXIF block (with or without its ``Exif\\0\\0`` prefix)."""
    if not exif:
        return 1
    from PIL import Image

    tags = Image.Exif()
    try:
        tags.load(exif if exif[:6] == b"Exif\0\0" else b"Exif\0\0" + exif)
    except Exception:  # a broken EXIF block must not cost the photo
        return 1
    value = tags.get(0x0112, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def probe(data: bytes, kind: str) -> tuple[int, int, int]:
    """(width, height, orientation to apply) from the container, decoding no pixels.

    Raises :class:`PhotoError` when the library cannot parse the container.
    """
    _configure()
    try:
        if kind == "avif":
            from PIL import Image

            with Image.open(io.BytesIO(data), formats=["AVIF"]) as im:
                return im.width, im.height, _exif_orientation(im.info.get("exif"))
        import pillow_heif

        heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
        width, height = heif.size
        orientation = 1
        if not _meta_has_transform(data):
            orientation = _exif_orientation(heif.info.get("exif"))
        return width, height, orientation
    except PhotoError:
        raise
    except Exception as e:  # the libraries raise ValueError, SyntaxError, RuntimeError...
        raise PhotoError(f"cannot read the {kind.upper()} container: {_short(e)}") from e


def decode(data: bytes, kind: str) -> np.ndarray:
    """The primary image as stored (container turns applied for HEIC), BGR uint8.

    Raises :class:`PhotoError` for a corrupt or truncated file.
    """
    _configure()
    try:
        if kind == "avif":
            from PIL import Image

            with Image.open(io.BytesIO(data), formats=["AVIF"]) as im:
                im.seek(0)  # an image sequence: its first frame
                rgb = np.asarray(im.convert("RGB"))
        else:
            fast = _decode_fast(data)
            if fast is not None:
                return fast
            import pillow_heif

            # libheif converts YUV straight to BGR (bgr_mode), read from its buffer without
            # a copy through Pillow: a 12 MP RGB->BGR pass less. Alpha or grey primary
            # images go through Pillow's conversion.
            heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True,
                                         bgr_mode=True)
            if heif.mode == "BGR":
                bgr = np.asarray(heif)
                _check_layout(bgr, kind)
                return bgr
            plain = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
            rgb = np.asarray(plain.to_pillow().convert("RGB"))
    except PhotoError:
        raise
    except Exception as e:
        raise PhotoError(f"cannot decode {kind.upper()} (corrupt or truncated): {_short(e)}") from e
    _check_layout(rgb, kind)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def _decode_fast(data: bytes) -> np.ndarray | None:
    """The primary image through FFmpeg's HEVC decoder, or None to take libheif's way.

    FFmpeg decodes a 12 MP HEIC in ~25% less CPU than libde265 (bench/THROUGHPUT.md).
    Layouts the box parser does not model, and any decoder failure, fall back: libheif
    then decodes the file or raises the error the user sees.
    """
    try:
        layout = primary_layout(data)
        return heifdecode.decode(layout)
    except Exception as e:  # unsupported layout, FFmpeg's refusal, a parser bug: libheif's turn
        log.debug("heic_fallback", reason=f"{type(e).__name__}: {e}")
    return None


def _check_layout(pixels: np.ndarray, kind: str) -> None:
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise PhotoError(f"unsupported {kind.upper()} pixel layout {pixels.dtype}{pixels.shape}")


def _short(e: Exception) -> str:
    text = " ".join(str(e).split())
    if text.startswith("cannot identify image file"):  # Pillow names a BytesIO object here
        return "not a readable image (truncated or corrupt)"
    return text[:200] or type(e).__name__
