"""Reading photos: header sniffing, the pixel-bomb guard, EXIF orientation and decoding.

A photo's bytes are read once. Its header is parsed by hand (JPEG SOF and EXIF, PNG IHDR
and eXIf, GIF, BMP, WebP, TIFF) so that a file claiming more than ``max_pixels`` pixels
is refused before any decoder allocates memory for it. HEIC and AVIF (:mod:`.heif`) are
sized by their libraries' container parsers, which decode no pixels; a camera RAW
(:mod:`.raw`) gives its embedded JPEG preview, which then goes the JPEG way.

Orientation is applied here rather than by OpenCV: images are decoded with
``IMREAD_IGNORE_ORIENTATION`` and rotated/flipped by :func:`apply_orientation` from the
tag this module parsed. OpenCV applies the tag for some flags and formats but not others
(not for ``IMREAD_UNCHANGED``, and its EXIF support differs between versions and codecs),
so doing it ourselves gives one behaviour everywhere, and we know the exact transform
when mapping face boxes back to full-resolution upright coordinates.

Transient versus permanent failures (``PhotoError.transient``): a file that vanished, is
not readable (permissions), is empty, or changed while we read it may be fine later, so
those are transient. A file that is complete and unchanged yet does not decode (not an
image, truncated, too large, unsupported format) is permanent; if it is later rewritten
its size or mtime changes and it is indexed afresh anyway.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from daemon.indexer import heif, raw
from daemon.indexer.types import PhotoError
from daemon.library.photos import RAW_EXTENSIONS

try:  # libjpeg-turbo's own decoder: the same pixels as OpenCV's, for ~half the CPU at full size
    import simplejpeg
except ImportError:  # pragma: no cover - a dependency; OpenCV decodes every JPEG without it
    simplejpeg = None

_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Magic numbers of formats that are never a RAW container: a file with a RAW name and one
# of these is a renamed ordinary image, read for what it is.
_NOT_RAW_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"RIFF", b"BM")
_REDUCED_FLAGS = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


@dataclass(frozen=True)
class ImageInfo:
    """What a photo's header says, before decoding.

    ``width`` and ``height`` are as stored (before orientation); ``orientation`` is the
    EXIF orientation 1..8 (1 = upright, also when there is no tag).
    """

    format: str
    width: int
    height: int
    orientation: int = 1

    @property
    def upright_size(self) -> tuple[int, int]:
        """(width, height) once the orientation is applied."""
        if self.orientation >= 5:  # 5..8 swap the axes
            return self.height, self.width
        return self.width, self.height


class HeaderError(ValueError):
    """The bytes are not a recognised image header."""


# --- header parsing ---------------------------------------------------------------------


def _tiff_tags(tiff: bytes, wanted: set[int]) -> dict[int, int]:
    """Integer values of ``wanted`` tags in IFD0 of a TIFF structure (EXIF uses the same)."""
    if len(tiff) < 8 or tiff[:4] not in (b"II*\0", b"MM\0*"):
        return {}
    end = "<" if tiff[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(end + "I", tiff, 4)
    if ifd + 2 > len(tiff):
        return {}
    (count,) = struct.unpack_from(end + "H", tiff, ifd)
    found: dict[int, int] = {}
    for i in range(count):
        pos = ifd + 2 + 12 * i
        if pos + 12 > len(tiff):
            break
        tag, typ, n = struct.unpack_from(end + "HHI", tiff, pos)
        if tag not in wanted or n != 1:
            continue
        if typ == 3:  # SHORT, left-justified in the 4-byte value field
            (found[tag],) = struct.unpack_from(end + "H", tiff, pos + 8)
        elif typ == 4:  # LONG
            (found[tag],) = struct.unpack_from(end + "I", tiff, pos + 8)
    return found


def _orientation(tags: dict[int, int]) -> int:
    """The EXIF orientation among parsed TIFF tags; 1 when missing or out of range."""
    value = tags.get(0x0112, 1)
    return value if 1 <= value <= 8 else 1


def _orientation_from_tiff(tiff: bytes) -> int:
    return _orientation(_tiff_tags(tiff, {0x0112}))


def _jpeg_info(data: bytes) -> ImageInfo:
    pos = 2
    orientation = 1
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise HeaderError("corrupt JPEG header (marker expected)")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # standalone markers carry no length
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        segment = data[pos + 4 : pos + 2 + length]
        if marker == 0xE1 and segment[:6] == b"Exif\0\0":
            orientation = _orientation_from_tiff(segment[6:])
        elif marker in _SOF_MARKERS:
            if len(segment) < 5:
                break
            height, width = struct.unpack_from(">HH", segment, 1)
            if width == 0 or height == 0:
                raise HeaderError("JPEG with its height deferred to a DNL marker (unsupported)")
            return ImageInfo("jpeg", width, height, orientation)
        elif marker == 0xDA:  # start of scan before any frame header
            break
        pos += 2 + length
    raise HeaderError("JPEG header ends before its frame size (truncated or corrupt)")


def _png_info(data: bytes) -> ImageInfo:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise HeaderError("PNG without an IHDR chunk")
    width, height = struct.unpack_from(">II", data, 16)
    orientation = 1
    pos = 8
    # eXIf must precede IDAT, so the scan stops there and never walks the pixel data.
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind == b"IDAT":
            break
        if kind == b"eXIf":
            orientation = _orientation_from_tiff(data[pos + 8 : pos + 8 + length])
        pos += 12 + length
    return ImageInfo("png", width, height, orientation)


def _webp_info(data: bytes) -> ImageInfo:
    kind = data[12:16]
    body = data[20:]
    if kind == b"VP8 " and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack_from("<HH", body, 6)
        return ImageInfo("webp", width & 0x3FFF, height & 0x3FFF)
    if kind == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
        (bits,) = struct.unpack_from("<I", body, 1)
        return ImageInfo("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if kind == b"VP8X" and len(body) >= 10:
        width = int.from_bytes(body[4:7], "little") + 1
        height = int.from_bytes(body[7:10], "little") + 1
        return ImageInfo("webp", width, height)
    raise HeaderError("WebP with an unrecognised first chunk")


def _bmp_info(data: bytes) -> ImageInfo:
    if len(data) < 26:
        raise HeaderError("BMP header truncated")
    (size,) = struct.unpack_from("<I", data, 14)
    if size == 12:  # OS/2 BITMAPCOREHEADER
        width, height = struct.unpack_from("<HH", data, 18)
    else:
        width, height = struct.unpack_from("<ii", data, 18)
    return ImageInfo("bmp", abs(width), abs(height))  # negative height = top-down rows


def _tiff_info(data: bytes) -> ImageInfo:
    tags = _tiff_tags(data, {256, 257, 0x0112})
    if 256 not in tags or 257 not in tags:
        raise HeaderError("TIFF without width and height in its first directory")
    return ImageInfo("tiff", tags[256], tags[257], _orientation(tags))


def sniff(data: bytes) -> ImageInfo:
    """Identify the format and stored size of an image from its first bytes.

    Raises :class:`HeaderError` for anything that is not a JPEG, PNG, GIF, BMP, WebP or
    TIFF header, or whose header is cut short.
    """
    if data[:3] == b"\xff\xd8\xff":
        return _jpeg_info(data)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return _png_info(data)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack_from("<HH", data, 6)
        return ImageInfo("gif", width, height)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_info(data)
    if data[:2] == b"BM":
        return _bmp_info(data)
    if data[:4] in (b"II*\0", b"MM\0*"):
        return _tiff_info(data)
    brand = heif.video_brand(data)
    if brand is not None:
        raise HeaderError(f"a video or other ISO media file (brand {brand!r}), not a photo")
    raise HeaderError(
        "not a supported image format (JPEG, PNG, GIF, BMP, WebP, TIFF, HEIC, AVIF, camera RAW)"
    )


# --- orientation ------------------------------------------------------------------------


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an image stored with EXIF ``orientation`` (1..8) into its upright view."""
    if orientation == 2:
        return cv2.flip(image, 1)
    if orientation == 3:
        return cv2.rotate(image, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(image, 0)
    if orientation == 5:
        return cv2.transpose(image)
    if orientation == 6:
        return cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.flip(cv2.transpose(image), -1)
    if orientation == 8:
        return cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return image


# --- reading and decoding ---------------------------------------------------------------


@dataclass(frozen=True)
class PhotoBytes:
    """A photo's bytes read once, with what its header says and the stat seen at read time.

    For a camera RAW, ``data`` is its embedded JPEG preview and ``origin`` is ``"raw"``;
    a RAW whose preview is a bitmap (or that has none) arrives already decoded in
    ``pixels``. ``size`` is always the file's byte count.
    """

    path: Path
    data: bytes
    info: ImageInfo
    mtime_ns: int
    file_size: int = -1
    origin: str = ""
    pixels: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def size(self) -> int:
        return self.file_size if self.file_size >= 0 else len(self.data)

    @property
    def label(self) -> str:
        """How the photo is named in reasons: its format, or e.g. "RAW preview (jpeg)"."""
        return f"RAW preview ({self.info.format})" if self.origin == "raw" else self.info.format


DEFAULT_MAX_FILE_BYTES = 512 * 1024 * 1024
"""Above any photo's size (a 150 MP RAW is ~200 MB); ``[detection] max_file_mb``."""
HEAD_BYTES = 64 * 1024
"""Read first to decide whether a file can be a photo at all, before reading the rest."""
WHOLE_READ_BYTES = 4 * 1024 * 1024
"""Files up to this size are read at once and screened after (one read, no seek)."""
_PHOTO_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM",
                b"II*\0", b"MM\0*")


def screen_head(path: Path, head: bytes, st: os.stat_result, max_bytes: int) -> None:
    """Refuse a file that cannot be a photo from its size and first bytes alone.

    A video renamed ``.jpg``, or a file of gigabytes, is refused before it is read whole
    (a 1.5 GB "photo" once took the scan's memory to 1.77 GB); raises :class:`PhotoError`
    with the reason, else returns. A camera RAW's own header is LibRaw's to judge.
    """
    if st.st_size > max_bytes:
        raise PhotoError(
            f"{st.st_size / 2**20:,.0f} MB is far larger than any photo "
            f"(detection.max_file_mb = {max_bytes // 2**20:,}); not read"
        )
    if head.startswith(_PHOTO_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return
    if heif.heif_kind(head) is not None or _is_raw(path, head):
        return
    try:
        sniff(head)  # says why not: a video's brand, or no known format
    except (HeaderError, struct.error) as e:
        raise PhotoError(_maybe_changed(path, st.st_size, st.st_mtime_ns, str(e))) from e


def _read_bytes(
    path: Path, max_bytes: int = DEFAULT_MAX_FILE_BYTES
) -> tuple[bytes, os.stat_result]:
    """The file's bytes and its stat, or a :class:`PhotoError` saying why not.

    Memory stays bounded by ``max_bytes``: the head is screened first, and a file that
    grows while being read is left for later (transient).
    """
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_size > WHOLE_READ_BYTES:  # the head first: is it worth reading?
                screen_head(path, f.read(HEAD_BYTES), st, max_bytes)
                f.seek(0)
            # Its size as stat saw it, plus one byte to tell a file still growing (being
            # copied in); never read(max_bytes), which allocates that much for any photo.
            data = f.read(st.st_size + 1)
            if not data:
                raise PhotoError("empty file (still being written?)", transient=True)
            if st.st_size <= WHOLE_READ_BYTES:
                screen_head(path, data, st, max_bytes)
    except FileNotFoundError as e:
        raise PhotoError("file vanished before it could be read", transient=True) from e
    except PermissionError as e:
        raise PhotoError("permission denied reading the file", transient=True) from e
    except IsADirectoryError as e:
        raise PhotoError("is a directory, not a photo") from e
    except OSError as e:
        raise PhotoError(f"cannot read the file: {e.strerror or e}", transient=True) from e
    if len(data) > st.st_size:
        raise PhotoError("the file grew while being read (still being copied?)", transient=True)
    return data, st


def _check_size(info: ImageInfo, max_pixels: int, what: str) -> None:
    if info.width <= 0 or info.height <= 0:
        raise PhotoError(f"{what} header claims an empty {info.width}x{info.height} image")
    if info.width * info.height > max_pixels:
        raise PhotoError(
            f"{what} of {info.width}x{info.height} = {info.width * info.height:,} pixels "
            f"exceeds detection.max_pixels = {max_pixels:,}"
        )


def _is_raw(path: Path, data: bytes) -> bool:
    return path.suffix.lower() in RAW_EXTENSIONS and not data.startswith(_NOT_RAW_MAGIC)


def read_photo(
    path: Path, max_pixels: int, max_bytes: int = DEFAULT_MAX_FILE_BYTES
) -> PhotoBytes:
    """Read ``path`` once, check its header and refuse it if it claims over ``max_pixels``.

    A file over ``max_bytes``, or whose first bytes are no photo's, is refused unread.
    Raises :class:`PhotoError` (transient for a vanished, unreadable or empty file).
    """
    data, st = _read_bytes(path, max_bytes)
    kind = heif.heif_kind(data)
    if kind is not None:
        try:
            width, height, orientation = heif.probe(data, kind)
        except PhotoError as e:
            raise PhotoError(_maybe_changed(path, len(data), st.st_mtime_ns, e.reason)) from e
        info = ImageInfo(kind, width, height, orientation)
    elif _is_raw(path, data):
        return _read_raw(path, data, st, max_pixels)
    else:
        info = _sniffed(path, data, st)
    _check_size(info, max_pixels, info.format)
    return PhotoBytes(path, data, info, st.st_mtime_ns, len(data))


def _sniffed(path: Path, data: bytes, st: os.stat_result) -> ImageInfo:
    try:
        return sniff(data)
    except HeaderError as e:
        raise PhotoError(_maybe_changed(path, len(data), st.st_mtime_ns, str(e))) from e
    except struct.error as e:
        raise PhotoError(f"corrupt {data[:4]!r} header: {e}") from e


def _read_raw(path: Path, data: bytes, st: os.stat_result, max_pixels: int) -> PhotoBytes:
    """A RAW file's preview as a photo to decode (its JPEG) or already decoded (a bitmap)."""
    try:
        found = raw.preview(data, max_pixels)
    except PhotoError as e:
        raise PhotoError(_maybe_changed(path, len(data), st.st_mtime_ns, e.reason)) from e
    if found.pixels is not None:
        h, w = found.pixels.shape[:2]
        info = ImageInfo("bitmap", w, h, found.orientation)
        _check_size(info, max_pixels, "RAW preview (bitmap)")
        return PhotoBytes(path, b"", info, st.st_mtime_ns, len(data), "raw", found.pixels)
    jpeg = found.jpeg or b""
    try:
        info = sniff(jpeg)
    except (HeaderError, struct.error) as e:
        reason = f"the RAW file's embedded preview is not a readable JPEG: {e}"
        raise PhotoError(_maybe_changed(path, len(data), st.st_mtime_ns, reason)) from e
    if info.format != "jpeg":
        raise PhotoError(f"the RAW file's embedded preview is a {info.format}, not a JPEG")
    if found.container_turn:  # the container's turn wins over the preview's own tag
        info = ImageInfo(info.format, info.width, info.height, found.orientation)
    _check_size(info, max_pixels, "RAW preview (jpeg)")
    return PhotoBytes(path, jpeg, info, st.st_mtime_ns, len(data), "raw")


def _maybe_changed(path: Path, size: int, mtime_ns: int, reason: str) -> str:
    """Return ``reason`` for a permanent failure, or raise a transient one if the file moved on.

    A file that changed since we read it is probably still being written: a copy in
    progress looks exactly like a truncated photo.
    """
    try:
        st = path.stat()
    except OSError:
        raise PhotoError(f"{reason}; the file has since vanished", transient=True) from None
    if st.st_size != size or st.st_mtime_ns != mtime_ns:
        raise PhotoError(f"{reason}; the file changed while being read", transient=True)
    return reason


def _jpeg_truncated(data: bytes) -> bool:
    """True when no end-of-image marker follows the first scan.

    Entropy-coded data stuffs every 0xFF byte, so FFD9 after the SOS can only be the real
    end marker; a thumbnail's own FFD9 sits before the main scan and does not count.
    """
    sos = data.find(b"\xff\xda")
    return sos < 0 or data.rfind(b"\xff\xd9") < sos


def jpeg_reduction(width: int, height: int, max_side: int) -> int:
    """The largest DCT reduction (1, 2, 4 or 8) that keeps the longer side >= ``max_side``."""
    longer = max(width, height)
    for factor in (8, 4, 2):
        if longer // factor >= max_side:
            return factor
    return 1


def decode(photo: PhotoBytes, reduction: int = 1) -> np.ndarray:
    """Decode to an upright BGR uint8 image, reduced in the DCT by ``reduction`` for JPEGs.

    ``reduction`` (1, 2, 4, 8) is honoured only for JPEG (a RAW's preview included),
    where it is nearly free (libjpeg-turbo through simplejpeg, else OpenCV: the same
    pixels); other formats are decoded at full size. Grayscale, 16-bit and alpha images
    come out as 8-bit BGR (alpha dropped); animated GIFs give their first frame, HEIF
    bursts their primary image. Raises :class:`PhotoError`.
    """
    info = photo.info
    if photo.pixels is not None:
        image = photo.pixels
    elif info.format in ("heif", "avif"):
        try:
            image = heif.decode(photo.data, info.format)
        except PhotoError as e:
            reason = _maybe_changed(photo.path, photo.size, photo.mtime_ns, e.reason)
            raise PhotoError(reason) from e
    else:
        image = _cv_decode(photo, reduction)
    return np.ascontiguousarray(apply_orientation(image, info.orientation))


def _turbo_decode(data: bytes, info: ImageInfo, reduction: int) -> np.ndarray | None:
    """A JPEG decoded by libjpeg-turbo (simplejpeg) reduced in the DCT, or None to leave
    it to OpenCV: no simplejpeg, or a JPEG it refuses (CMYK, recoverable corruption).

    The same library and settings as OpenCV's decoder (accurate integer IDCT, smooth
    chroma upsampling), so the same pixels; it skips OpenCV's per-row conversion.
    """
    if simplejpeg is None:
        return None
    shape = (-(-info.height // reduction), -(-info.width // reduction))
    try:
        image = simplejpeg.decode_jpeg(
            data, "BGR", min_height=shape[0], min_width=shape[1], strict=True
        )
    except ValueError:
        return None
    # It picks the smallest libjpeg scale giving at least that size: 1/reduction itself.
    return image if image.shape[:2] == shape else None


def _cv_decode(photo: PhotoBytes, reduction: int) -> np.ndarray:
    """The decode of the hand-sniffed formats, as stored (not yet turned upright)."""
    info = photo.info
    if info.format == "jpeg" and _jpeg_truncated(photo.data):
        reason = f"truncated {photo.label} (no end marker)"
        raise PhotoError(_maybe_changed(photo.path, photo.size, photo.mtime_ns, reason))
    if info.format == "jpeg":
        turbo = _turbo_decode(photo.data, info, reduction)
        if turbo is not None:
            return turbo
    flags = _REDUCED_FLAGS[reduction if info.format == "jpeg" else 1]
    buf = np.frombuffer(photo.data, dtype=np.uint8)
    try:
        image = cv2.imdecode(buf, flags | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error as e:
        raise PhotoError(f"cannot decode {photo.label}: {str(e).strip()[:200]}") from e
    if image is None or image.size == 0:
        reason = f"cannot decode {photo.label} (corrupt or truncated)"
        raise PhotoError(_maybe_changed(photo.path, photo.size, photo.mtime_ns, reason))
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.dtype == np.uint16:  # IMREAD_COLOR already gives 8 bits; this is a safety net
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise PhotoError(f"unsupported {info.format} pixel type {image.dtype}")
    return image


def load_upright(path: Path, max_pixels: int) -> np.ndarray:
    """The photo at full resolution, upright (EXIF orientation applied), as BGR uint8.

    Raises :class:`PhotoError` with a readable reason.
    """
    return decode(read_photo(Path(path), max_pixels))


def load_reduced(path: Path, max_pixels: int, shrink: float) -> tuple[np.ndarray, float]:
    """The upright photo decoded at most ``shrink`` times smaller, and its scale to full size.

    A JPEG is reduced in the DCT by the largest of 1/2, 1/4, 1/8 that ``shrink`` allows (a
    full decode of 12 MP costs 3-4 times a 1/4 one); other formats are decoded whole.
    Returns (image, image px per full-resolution px).
    """
    photo = read_photo(Path(path), max_pixels)
    reduction = next((f for f in (8, 4, 2) if f <= shrink), 1)
    image = decode(photo, reduction)
    return image, image.shape[1] / photo.info.upright_size[0]
