"""Makers of hostile photo files for the robustness tests.

Every function writes one file (or folder, or link) into ``folder`` and returns its path.
Nothing here uses facecluster's own code: the files are built from the format specs
(JPEG, PNG, EXIF), so a test compares the product against the spec, not against itself.
Image content comes from a caller-supplied BGR array (usually a real face photo).
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

BOMB_SIDE = 60000
"""Width and height that bomb headers claim: 3.6 gigapixels, ~10.8 GB decoded."""


# -- helpers -----------------------------------------------------------------------------


def encode_jpeg(image: np.ndarray, quality: int = 92) -> bytes:
    """Baseline JPEG bytes of a BGR or grayscale image (OpenCV's encoder)."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return buf.tobytes()


def exif_orientation_segment(orientation: int) -> bytes:
    """An APP1 segment holding a little-endian TIFF IFD0 with only the Orientation tag."""
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """Insert an EXIF orientation segment right after SOI."""
    assert jpeg[:2] == b"\xff\xd8"
    return jpeg[:2] + exif_orientation_segment(orientation) + jpeg[2:]


def stored_view(upright: np.ndarray, orientation: int) -> np.ndarray:
    """The pixel array a camera stores for an ``upright`` scene tagged with ``orientation``.

    From the EXIF 2.3 table (row 0 / column 0 of the stored image): 2 mirrored,
    3 rotated 180, 4 flipped vertically, 5 transposed, 6 needs a 90 degree clockwise turn
    to display, 7 transverse, 8 needs a 90 degree counter-clockwise turn.
    """
    u = upright
    views = {
        1: lambda: u,
        2: lambda: u[:, ::-1],
        3: lambda: u[::-1, ::-1],
        4: lambda: u[::-1],
        5: lambda: u.swapaxes(0, 1),
        6: lambda: np.rot90(u, 1),  # stored turned counter-clockwise; display turns it back
        7: lambda: u[::-1, ::-1].swapaxes(0, 1),
        8: lambda: np.rot90(u, -1),
    }
    return np.ascontiguousarray(views[orientation]())


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


# -- broken and fake files ---------------------------------------------------------------


def zero_byte(folder: Path, name: str = "empty.jpg") -> Path:
    """An empty file with a photo name."""
    p = folder / name
    p.write_bytes(b"")
    return p


def truncated_jpeg(folder: Path, image: np.ndarray, name: str = "truncated.jpg") -> Path:
    """A real JPEG cut in the middle of its entropy-coded data."""
    data = encode_jpeg(image)
    p = folder / name
    p.write_bytes(data[: len(data) // 2])
    return p


def random_bytes(folder: Path, name: str = "random.jpg", size: int = 4096, seed: int = 7) -> Path:
    """Random bytes named like a photo."""
    p = folder / name
    p.write_bytes(np.random.default_rng(seed).bytes(size))
    return p


def text_file(folder: Path, name: str = "notes.png") -> Path:
    """A text file named like a photo."""
    p = folder / name
    p.write_text("this is not a picture\n" * 20)
    return p


def png_bomb(folder: Path, name: str = "bomb.png", side: int = BOMB_SIDE) -> Path:
    """A PNG whose IHDR claims ``side`` x ``side`` RGB pixels (the IDAT holds one row)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" + b"\x00" * 3 * 16)
    data = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
    p = folder / name
    p.write_bytes(data + _png_chunk(b"IEND", b""))
    return p


def jpeg_bomb(
    folder: Path, image: np.ndarray, name: str = "bomb.jpg", side: int = BOMB_SIDE
) -> Path:
    """A real JPEG whose frame header (SOF) is patched to claim ``side`` x ``side``."""
    data = bytearray(encode_jpeg(image))
    pos = 2
    while data[pos + 1] not in (0xC0, 0xC1, 0xC2):
        pos += 2 + struct.unpack_from(">H", data, pos + 2)[0]
    struct.pack_into(">HH", data, pos + 5, side, side)
    p = folder / name
    p.write_bytes(bytes(data))
    return p


# -- unusual but valid images --------------------------------------------------------------


def grayscale(folder: Path, image: np.ndarray, name: str = "gray.jpg") -> Path:
    """A single-channel JPEG."""
    p = folder / name
    p.write_bytes(encode_jpeg(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)))
    return p


def png16(folder: Path, image: np.ndarray, name: str = "deep.png") -> Path:
    """A 16-bit-per-channel RGB PNG."""
    p = folder / name
    ok, buf = cv2.imencode(".png", image.astype(np.uint16) * 257)
    assert ok
    p.write_bytes(buf.tobytes())
    return p


def rgba_png(folder: Path, image: np.ndarray, name: str = "alpha.png") -> Path:
    """An RGBA PNG, half transparent on the left half (colour kept under the alpha)."""
    bgra = cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)
    bgra[:, : image.shape[1] // 2, 3] = 128
    ok, buf = cv2.imencode(".png", bgra)
    assert ok
    p = folder / name
    p.write_bytes(buf.tobytes())
    return p


def oriented_jpeg(folder: Path, upright: np.ndarray, orientation: int) -> Path:
    """A JPEG whose stored pixels need EXIF ``orientation`` to look like ``upright``."""
    p = folder / f"orientation-{orientation}.jpg"
    stored = encode_jpeg(stored_view(upright, orientation))
    p.write_bytes(with_exif_orientation(stored, orientation))
    return p


def animated_gif(folder: Path, frames: list[np.ndarray], name: str = "animated.gif") -> Path:
    """An animated GIF of ``frames`` (BGR, all the same size)."""
    anim = cv2.Animation()
    anim.frames = [np.ascontiguousarray(f) for f in frames]
    anim.durations = [200] * len(frames)
    ok, buf = cv2.imencodeanimation(".gif", anim)
    if not ok:
        raise RuntimeError("OpenCV could not encode an animated GIF")
    p = folder / name
    p.write_bytes(bytes(buf))
    return p


# -- CMYK JPEG: OpenCV cannot write one, so a small baseline encoder does ----------------


def _zigzag() -> list[tuple[int, int]]:
    order = []
    for s in range(15):
        cells = [(i, s - i) for i in range(8) if 0 <= s - i < 8]
        order += cells if s % 2 else cells[::-1]
    return order


_ZIGZAG = _zigzag()
# Our own Huffman tables: every symbol the encoder can emit gets a fixed-length code
# (4 bits for the 12 DC categories, 8 bits for EOB, ZRL and the 160 run/size pairs).
_DC_SYMBOLS = list(range(12))
_AC_SYMBOLS = [0x00, 0xF0] + [(run << 4) | size for run in range(16) for size in range(1, 11)]
_QUANT = 4


def _dht(table_class: int, symbols: list[int], length: int) -> bytes:
    counts = [0] * 16
    counts[length - 1] = len(symbols)
    return bytes([table_class << 4]) + bytes(counts) + bytes(symbols)


class _Bits:
    def __init__(self) -> None:
        self.bits: list[str] = []

    def put(self, value: int, length: int) -> None:
        if length:
            self.bits.append(format(value, f"0{length}b"))

    def bytes(self) -> bytes:
        s = "".join(self.bits)
        s += "1" * (-len(s) % 8)
        raw = int(s, 2).to_bytes(len(s) // 8, "big") if s else b""
        return raw.replace(b"\xff", b"\xff\x00")


def _magnitude(v: int) -> tuple[int, int]:
    size = abs(v).bit_length()
    return size, (v if v >= 0 else v + (1 << size) - 1)


def encode_cmyk_jpeg(cmyk: np.ndarray) -> bytes:
    """Baseline JPEG of a 4-channel uint8 array, stored as Adobe (inverted) CMYK.

    Height and width must be multiples of 8. The stored samples are inverted, as
    Photoshop writes them and libjpeg-based readers expect with an Adobe APP14 marker.
    """
    h, w, n = cmyk.shape
    assert n == 4 and h % 8 == 0 and w % 8 == 0
    x = np.arange(8)
    m = np.cos((2 * x[None, :] + 1) * x[:, None] * np.pi / 16) / 2
    m[0] /= np.sqrt(2)
    samples = (255 - cmyk.astype(np.float64)) - 128
    blocks = samples.reshape(h // 8, 8, w // 8, 8, 4).transpose(0, 2, 4, 1, 3)
    coef = np.rint(np.einsum("ux,abcxy,vy->abcuv", m, blocks, m) / _QUANT).astype(int)
    zz = np.array([[coef[..., i, j]] for i, j in _ZIGZAG])[:, 0]  # (64, rows, cols, 4)
    dc_code = {s: i for i, s in enumerate(_DC_SYMBOLS)}
    ac_code = {s: i for i, s in enumerate(_AC_SYMBOLS)}
    out = _Bits()
    prev = [0, 0, 0, 0]
    for r in range(h // 8):
        for c in range(w // 8):
            for k in range(4):
                block = zz[:, r, c, k].tolist()
                size, bits = _magnitude(block[0] - prev[k])
                prev[k] = block[0]
                out.put(dc_code[size], 4)
                out.put(bits, size)
                run = 0
                for v in block[1:]:
                    if v == 0:
                        run += 1
                        continue
                    while run > 15:
                        out.put(ac_code[0xF0], 8)
                        run -= 16
                    size, bits = _magnitude(v)
                    out.put(ac_code[(run << 4) | size], 8)
                    out.put(bits, size)
                    run = 0
                if run:
                    out.put(ac_code[0x00], 8)

    def seg(marker: int, body: bytes) -> bytes:
        return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body

    adobe = b"Adobe" + struct.pack(">HHHB", 100, 0, 0, 0)
    sof = struct.pack(">BHHB", 8, h, w, 4) + b"".join(bytes([i, 0x11, 0]) for i in range(1, 5))
    sos = bytes([4]) + b"".join(bytes([i, 0x00]) for i in range(1, 5)) + bytes([0, 63, 0])
    return (
        b"\xff\xd8"
        + seg(0xEE, adobe)
        + seg(0xDB, bytes([0]) + bytes([_QUANT] * 64))
        + seg(0xC0, sof)
        + seg(0xC4, _dht(0, _DC_SYMBOLS, 4) + _dht(1, _AC_SYMBOLS, 8))
        + seg(0xDA, sos)
        + out.bytes()
        + b"\xff\xd9"
    )


def bgr_to_cmyk(image: np.ndarray) -> np.ndarray:
    """Naive BGR -> CMYK with full black generation (K = 1 - max(R, G, B))."""
    rgb = image[..., ::-1].astype(np.float64) / 255
    k = 1 - rgb.max(axis=2)
    denom = np.where(k < 1, 1 - k, 1)
    cmy = (1 - rgb - k[..., None]) / denom[..., None]
    return np.rint(np.dstack([cmy, k]) * 255).astype(np.uint8)


def cmyk_jpeg(folder: Path, image: np.ndarray, name: str = "cmyk.jpg") -> Path:
    """A CMYK JPEG of ``image`` (cropped to a multiple of 8 pixels)."""
    h, w = image.shape[0] // 8 * 8, image.shape[1] // 8 * 8
    p = folder / name
    p.write_bytes(encode_cmyk_jpeg(bgr_to_cmyk(image[:h, :w])))
    return p


# -- things that are not regular files -----------------------------------------------------


def directory_named_photo(folder: Path, name: str = "x.jpg") -> Path:
    """A folder whose name looks like a photo's."""
    p = folder / name
    p.mkdir()
    return p


def symlink_loop(folder: Path) -> tuple[Path, Path]:
    """Two photo-named symlinks pointing at each other, plus nothing else."""
    a, b = folder / "loop-a.jpg", folder / "loop-b.jpg"
    a.symlink_to(b.name)
    b.symlink_to(a.name)
    return a, b


def dir_symlink_loop(folder: Path, name: str = "loop") -> Path:
    """A folder symlink pointing at its own parent (a walk that follows it never ends)."""
    p = folder / name
    p.symlink_to(".")
    return p


def unreadable(folder: Path, image: np.ndarray, name: str = "secret.jpg") -> Path:
    """A valid JPEG with mode 000 (still readable by root)."""
    p = folder / name
    p.write_bytes(encode_jpeg(image))
    p.chmod(0)
    return p


def can_read_despite_mode(path: Path) -> bool:
    """True when this process can read a mode-000 file (root, CAP_DAC_OVERRIDE)."""
    try:
        with open(path, "rb"):
            return True
    except PermissionError:
        return False


# -- awkward names ------------------------------------------------------------------------


def odd_names() -> dict[str, bytes]:
    """File names (as bytes) that break naive path handling, by label."""
    long_stem = b"n" * (255 - len(b".jpg"))
    return {
        "spaces": b"  photo with  spaces .jpg",
        "newline": b"line\nbreak.jpg",
        "non-utf8": b"caf\xe9-\xff\xfe.jpg",
        "255-bytes": long_stem + b".jpg",
    }


def write_named(folder: Path, raw_name: bytes, data: bytes) -> Path:
    """Write ``data`` under a file name given as raw bytes; returns the str path."""
    path = os.path.join(os.fsencode(folder), raw_name)
    with open(path, "wb") as f:
        f.write(data)
    return Path(os.fsdecode(path))
