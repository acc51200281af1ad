"""Makers of HEIC, AVIF and DNG test files (good and hostile) from real photos.

HEIC and AVIF are written by the libraries' own encoders (pillow-heif's x265, Pillow's
libavif), as a phone's file would be: with the turn recorded as EXIF orientation, which
the encoders carry into the container's ``irot`` property. The DNG is built here from
the DNG 1.4 and TIFF 6 specifications: a TIFF whose first directory is the camera's JPEG
preview and whose sub-directory holds a small 12-bit Bayer mosaic, which LibRaw opens as
the camera RAW it is. No camera-made RAW sample could be obtained offline (see the
report of issue 13), so this is the RAW family under test. Nothing here uses
facecluster's own code.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import cv2
import numpy as np
from hostile import encode_jpeg, stored_view


def _exif(orientation: int) -> bytes:
    from PIL import Image

    tags = Image.Exif()
    tags[0x0112] = orientation
    return tags.tobytes()


def _pil(image: np.ndarray):
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(image[..., ::-1]))


def heic_bytes(upright: np.ndarray, orientation: int = 1, quality: int = 90) -> bytes:
    """A HEIC of ``upright`` stored turned for EXIF ``orientation`` (pillow-heif encoder)."""
    import pillow_heif

    heif = pillow_heif.from_pillow(_pil(stored_view(upright, orientation)))
    buf = io.BytesIO()
    heif.save(buf, quality=quality, exif=_exif(orientation))
    return buf.getvalue()


def heic_exif_only(upright: np.ndarray, orientation: int) -> bytes:
    """A HEIC whose turn is recorded in EXIF alone, without ``irot`` (as some converters do).

    The encoder turns an EXIF orientation into ``irot``, so the value is written under
    ResolutionUnit (0x0128, also a SHORT) and that tag number patched to Orientation in
    the encoded file: same length, so the container's offsets stay right.
    """
    import pillow_heif
    from PIL import Image

    tags = Image.Exif()
    tags[0x0128] = orientation
    buf = io.BytesIO()
    stored = stored_view(upright, orientation)
    pillow_heif.from_pillow(_pil(stored)).save(buf, quality=90, exif=tags.tobytes())
    data = buf.getvalue()
    entry = struct.pack(">HHIHH", 0x0128, 3, 1, orientation, 0)  # Pillow writes "MM"
    assert data.count(entry) == 1 and b"irot" not in data[:4096]
    return data.replace(entry, struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0))


def heic_10bit(upright: np.ndarray) -> bytes:
    """A 10-bit HEIC (HEVC Main 10) of ``upright``."""
    import pillow_heif

    rgb16 = np.ascontiguousarray(upright[..., ::-1].astype(np.uint16) * 257)
    heif = pillow_heif.from_bytes(
        mode="RGB;16", size=(rgb16.shape[1], rgb16.shape[0]), data=rgb16.tobytes()
    )
    buf = io.BytesIO()
    heif.save(buf, quality=90)
    data = buf.getvalue()
    assert pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=False).info[
        "bit_depth"
    ] == 10
    return data


def heic_burst(first: np.ndarray, primary: np.ndarray) -> bytes:
    """A two-image HEIF collection (a burst) whose *second* image is the primary one."""
    import pillow_heif

    heif = pillow_heif.from_pillow(_pil(first))
    heif.add_from_pillow(_pil(primary))
    buf = io.BytesIO()
    heif.save(buf, quality=85, primary_index=1)
    return buf.getvalue()


def avif_bytes(upright: np.ndarray, orientation: int = 1, quality: int = 80) -> bytes:
    """An AVIF of ``upright`` stored turned for EXIF ``orientation`` (Pillow's encoder)."""
    buf = io.BytesIO()
    _pil(stored_view(upright, orientation)).save(
        buf, format="AVIF", quality=quality, exif=_exif(orientation)
    )
    return buf.getvalue()


def with_ispe(data: bytes, side: int) -> bytes:
    """A HEIF/AVIF whose image spatial extent (``ispe``) claims ``side`` x ``side``."""
    out = bytearray(data)
    at = bytes(out).find(b"ispe")
    assert at > 0
    struct.pack_into(">II", out, at + 8, side, side)  # after the full-box version/flags
    return bytes(out)


def mp4_named_like_a_photo() -> bytes:
    """The start of an MP4 video (``ftyp isom``), as a phone's clip renamed .heic would be."""
    ftyp = struct.pack(">I4s4sI", 24, b"ftyp", b"isom", 0x200) + b"isomiso2"
    return ftyp + struct.pack(">I4s", 16, b"mdat") + b"\0" * 8


# -- DNG -----------------------------------------------------------------------------------


def _entry(tag: int, typ: int, fmt: str, *values) -> tuple[int, int, int, bytes]:
    count = len(values) // (2 if typ in (5, 10) else 1)  # RATIONALs are value pairs
    return tag, typ, count, struct.pack("<" + fmt * len(values), *values)


def _ascii(tag: int, text: str) -> tuple[int, int, int, bytes]:
    b = text.encode() + b"\0"
    return tag, 2, len(b), b


def _ifd(entries: list, at: int) -> bytes:
    """A TIFF directory laid at file offset ``at``, values that do not fit placed after it."""
    entries = sorted(entries)
    size = 2 + 12 * len(entries) + 4
    extra = b""
    out = struct.pack("<H", len(entries))
    for tag, typ, count, payload in entries:
        if len(payload) <= 4:
            out += struct.pack("<HHI", tag, typ, count) + payload.ljust(4, b"\0")
        else:
            out += struct.pack("<HHII", tag, typ, count, at + size + len(extra))
            extra += payload + b"\0" * (len(payload) % 2)
    return out + struct.pack("<I", 0) + extra


def dng_bytes(preview_jpeg: bytes, width: int, height: int, orientation: int = 1) -> bytes:
    """A DNG holding ``preview_jpeg`` (``width`` x ``height``) as its camera preview.

    IFD0 is the preview (NewSubfileType 1, JPEG compressed YCbCr) with the DNG tags and
    ``orientation``; its SubIFD is the raw image, a 64x64 RGGB mosaic of 12-bit samples.
    """
    side = 64
    mosaic = np.random.default_rng(1).integers(0, 4096, (side, side)).astype("<u2").tobytes()
    raw_at = 8
    jpeg_at = raw_at + len(mosaic)
    ifd0_at = jpeg_at + len(preview_jpeg) + len(preview_jpeg) % 2

    def ifd0(sub_at: int) -> list:
        identity = [v for i in range(9) for v in ((1 if i % 4 == 0 else 0), 1)]  # num, den
        return [
            _entry(254, 4, "I", 1), _entry(256, 4, "I", width), _entry(257, 4, "I", height),
            _entry(258, 3, "H", 8, 8, 8), _entry(259, 3, "H", 7), _entry(262, 3, "H", 6),
            _ascii(271, "facecluster"), _ascii(272, "Test DNG"), _entry(273, 4, "I", jpeg_at),
            _entry(274, 3, "H", orientation), _entry(277, 3, "H", 3),
            _entry(278, 4, "I", height), _entry(279, 4, "I", len(preview_jpeg)),
            _entry(330, 4, "I", sub_at), _entry(50706, 1, "B", 1, 4, 0, 0),
            _entry(50707, 1, "B", 1, 1, 0, 0), _ascii(50708, "facecluster Test DNG"),
            _entry(50721, 10, "i", *identity),
            _entry(50728, 5, "I", 1, 1, 1, 1, 1, 1), _entry(50778, 3, "H", 21),
        ]

    sub_at = ifd0_at + len(_ifd(ifd0(0), ifd0_at))
    sub_at += sub_at % 2
    sub = [
        _entry(254, 4, "I", 0), _entry(256, 4, "I", side), _entry(257, 4, "I", side),
        _entry(258, 3, "H", 16), _entry(259, 3, "H", 1), _entry(262, 3, "H", 32803),
        _entry(273, 4, "I", raw_at), _entry(277, 3, "H", 1), _entry(278, 4, "I", side),
        _entry(279, 4, "I", len(mosaic)), _entry(33421, 3, "H", 2, 2),
        _entry(33422, 1, "B", 0, 1, 1, 2), _entry(50717, 3, "H", 4095),
    ]
    data = b"II*\0" + struct.pack("<I", ifd0_at) + mosaic + preview_jpeg
    data += b"\0" * (ifd0_at - len(data)) + _ifd(ifd0(sub_at), ifd0_at)
    data += b"\0" * (sub_at - len(data))
    return data + _ifd(sub, sub_at)


def dng_without_preview(width: int = 96, height: int = 64, orientation: int = 1) -> bytes:
    """A DNG with no preview at all: IFD0 is the raw RGGB mosaic itself (12-bit samples)."""
    mosaic = np.random.default_rng(2).integers(0, 4096, (height, width)).astype("<u2").tobytes()
    ifd_at = 8 + len(mosaic)
    identity = [v for i in range(9) for v in ((1 if i % 4 == 0 else 0), 1)]
    entries = [
        _entry(254, 4, "I", 0), _entry(256, 4, "I", width), _entry(257, 4, "I", height),
        _entry(258, 3, "H", 16), _entry(259, 3, "H", 1), _entry(262, 3, "H", 32803),
        _ascii(271, "facecluster"), _ascii(272, "Test DNG"), _entry(273, 4, "I", 8),
        _entry(274, 3, "H", orientation), _entry(277, 3, "H", 1),
        _entry(278, 4, "I", height), _entry(279, 4, "I", len(mosaic)),
        _entry(33421, 3, "H", 2, 2), _entry(33422, 1, "B", 0, 1, 1, 2),
        _entry(50706, 1, "B", 1, 4, 0, 0), _entry(50708, 2, "B", *b"facecluster Test DNG\0"),
        _entry(50717, 3, "H", 4095), _entry(50721, 10, "i", *identity),
        _entry(50728, 5, "I", 1, 1, 1, 1, 1, 1), _entry(50778, 3, "H", 21),
    ]
    return b"II*\0" + struct.pack("<I", ifd_at) + mosaic + _ifd(entries, ifd_at)


def dng_of(upright: np.ndarray, orientation: int = 1, quality: int = 92) -> bytes:
    """A DNG whose preview shows ``upright`` once turned by ``orientation``."""
    stored = stored_view(upright, orientation)
    return dng_bytes(encode_jpeg(stored, quality), stored.shape[1], stored.shape[0], orientation)


def dng_bomb(upright: np.ndarray, side: int) -> bytes:
    """A DNG whose JPEG preview's frame header claims ``side`` x ``side``."""
    jpeg = bytearray(encode_jpeg(upright))
    pos = 2
    while jpeg[pos + 1] not in (0xC0, 0xC1, 0xC2):
        pos += 2 + struct.unpack_from(">H", jpeg, pos + 2)[0]
    struct.pack_into(">HH", jpeg, pos + 5, side, side)
    return dng_bytes(bytes(jpeg), side, side)


def write(folder: Path, name: str, data: bytes) -> Path:
    """Write ``data`` as ``folder / name`` and return the path."""
    p = folder / name
    p.write_bytes(data)
    return p


def decoded_like(a: np.ndarray, b: np.ndarray, tolerance: float = 8.0) -> bool:
    """Same shape and a small mean difference (lossy re-encoding)."""
    return a.shape == b.shape and float(cv2.absdiff(a, b).mean()) < tolerance
