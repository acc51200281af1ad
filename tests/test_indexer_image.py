"""Decoding photos: header sniffing, the pixel guard, EXIF orientation, odd pixel formats."""

from __future__ import annotations

import pickle
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.indexer.image import (
    HeaderError,
    apply_orientation,
    decode,
    jpeg_reduction,
    load_reduced,
    load_upright,
    read_photo,
    sniff,
)
from daemon.indexer.types import PhotoError

BIG = 100_000_000


def encode(ext: str, image: np.ndarray, params: list[int] | None = None) -> bytes:
    ok, buf = cv2.imencode(ext, image, params or [])
    assert ok
    return buf.tobytes()


def exif_tiff(orientation: int, big_endian: bool = False) -> bytes:
    """A minimal TIFF structure with IFD0 holding only the orientation tag."""
    e = ">" if big_endian else "<"
    head = b"MM\0*" if big_endian else b"II*\0"
    entry = struct.pack(e + "HHI", 0x0112, 3, 1) + struct.pack(e + "HH", orientation, 0)
    ifd0 = struct.pack(e + "H", 1) + entry + struct.pack(e + "I", 0)
    return head + struct.pack(e + "I", 8) + ifd0


def with_exif(jpeg: bytes, orientation: int, big_endian: bool = False) -> bytes:
    """Insert an APP1 Exif segment right after SOI."""
    payload = b"Exif\0\0" + exif_tiff(orientation, big_endian)
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def quadrants(width: int = 96, height: int = 64) -> np.ndarray:
    """An image whose four quadrants differ, so every rotation and flip is distinguishable."""
    img = np.zeros((height, width, 3), np.uint8)
    h2, w2 = height // 2, width // 2
    img[:h2, :w2] = (0, 0, 255)
    img[:h2, w2:] = (0, 255, 0)
    img[h2:, :w2] = (255, 0, 0)
    img[h2:, w2:] = (255, 255, 255)
    return img


# The inverse of each EXIF orientation: what a camera stores for an upright scene.
STORE_FOR = {
    1: lambda im: im,
    2: lambda im: cv2.flip(im, 1),
    3: lambda im: cv2.rotate(im, cv2.ROTATE_180),
    4: lambda im: cv2.flip(im, 0),
    5: lambda im: cv2.transpose(im),
    6: lambda im: cv2.rotate(im, cv2.ROTATE_90_COUNTERCLOCKWISE),
    7: lambda im: cv2.flip(cv2.transpose(im), -1),
    8: lambda im: cv2.rotate(im, cv2.ROTATE_90_CLOCKWISE),
}


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


# --- headers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ext", "fmt", "params"),
    [
        (".jpg", "jpeg", None),
        (".png", "png", None),
        (".bmp", "bmp", None),
        (".gif", "gif", None),
        (".tiff", "tiff", None),
        (".webp", "webp", [cv2.IMWRITE_WEBP_QUALITY, 80]),
        (".webp", "webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),  # lossless: VP8L
    ],
)
def test_sniff_reads_the_stored_size_of_each_format(ext: str, fmt: str, params) -> None:
    data = encode(ext, quadrants(123, 45), params)
    info = sniff(data)
    assert (info.format, info.width, info.height) == (fmt, 123, 45)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 65535), st.integers(1, 65535), st.integers(1, 8), st.booleans())
def test_sniff_jpeg_header_fields(width: int, height: int, orientation: int, big: bool) -> None:
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    data = with_exif(b"\xff\xd8" + sof + b"\xff\xda", orientation, big)
    info = sniff(data)
    assert (info.width, info.height, info.orientation) == (width, height, orientation)
    swapped = orientation >= 5
    assert info.upright_size == ((height, width) if swapped else (width, height))


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1))
def test_sniff_png_ihdr(width: int, height: int) -> None:
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    info = sniff(b"\x89PNG\r\n\x1a\n" + ihdr)
    assert (info.width, info.height) == (width, height)


def test_sniff_png_exif_orientation() -> None:
    png = encode(".png", quadrants())
    ihdr_end = 8 + 25
    data = png[:ihdr_end] + png_chunk(b"eXIf", exif_tiff(6)) + png[ihdr_end:]
    assert sniff(data).orientation == 6


@pytest.mark.parametrize(
    "data",
    [b"hello world, not an image", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF\0\0\0\0WEBPXXXX"],
)
def test_sniff_refuses_non_images_and_cut_headers(data: bytes) -> None:
    with pytest.raises(HeaderError):
        sniff(data)


def test_pixel_limit_refuses_before_decoding(tmp_path: Path) -> None:
    # A bomb: the header claims 100k x 100k and the pixel data is garbage. Refusal must
    # come from the header, not from a decoder that tried (and failed) to decode.
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0))
    p = write(tmp_path, "bomb.png", b"\x89PNG\r\n\x1a\n" + ihdr + png_chunk(b"IDAT", b"x" * 99))
    with pytest.raises(PhotoError, match="max_pixels") as e:
        read_photo(p, BIG)
    assert not e.value.transient


def test_pixel_limit_is_inclusive(tmp_path: Path) -> None:
    p = write(tmp_path, "a.jpg", encode(".jpg", quadrants(100, 50)))
    assert read_photo(p, 5000).info.width == 100
    with pytest.raises(PhotoError, match="5,000 pixels exceeds"):
        read_photo(p, 4999)


def test_jpeg_reduction_keeps_longer_side_at_least_max_side() -> None:
    assert jpeg_reduction(4000, 3000, 1280) == 2
    assert jpeg_reduction(3000, 4000, 1000) == 4  # exactly max_side is enough
    assert jpeg_reduction(8000, 6000, 1000) == 8
    assert jpeg_reduction(1200, 800, 1280) == 1
    for w, h, m in [(4000, 3000, 1280), (12345, 77, 640), (641, 641, 640)]:
        r = jpeg_reduction(w, h, m)
        assert max(w, h) // r >= m or r == 1
        assert r == 8 or max(w, h) // (2 * r) < m


# --- orientation --------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("reduction", [1, 2])
def test_exif_orientation_gives_the_upright_image(
    tmp_path: Path, orientation: int, reduction: int
) -> None:
    upright = quadrants(96, 64)
    stored = STORE_FOR[orientation](upright)
    data = with_exif(encode(".jpg", stored, [cv2.IMWRITE_JPEG_QUALITY, 95]), orientation)
    photo = read_photo(write(tmp_path, "o.jpg", data), BIG)
    assert photo.info.upright_size == (96, 64)
    got = decode(photo, reduction)
    expected = cv2.resize(upright, (96 // reduction, 64 // reduction), interpolation=cv2.INTER_AREA)
    assert got.shape == expected.shape
    assert np.abs(got.astype(int) - expected.astype(int)).mean() < 12
    # OpenCV's own orientation handling (IMREAD_COLOR) agrees with ours.
    theirs = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if reduction == 1:
        assert np.abs(got.astype(int) - theirs.astype(int)).max() <= 2


def test_apply_orientation_is_undone_by_its_inverse() -> None:
    img = quadrants(7, 5)
    for o, store in STORE_FOR.items():
        assert np.array_equal(apply_orientation(store(img), o), img)


# --- pixel formats --------------------------------------------------------------------------


def test_grayscale_rgba_and_16bit_come_out_as_8bit_bgr(tmp_path: Path) -> None:
    gray = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (10, 1))
    rgba = np.dstack([quadrants(40, 20), np.full((20, 40), 7, np.uint8)])
    deep = (gray.astype(np.uint16) * 257)
    for name, img in [("g.png", gray), ("rgba.png", rgba), ("deep.png", deep)]:
        got = load_upright(write(tmp_path, name, encode(".png", img)), BIG)
        assert got.dtype == np.uint8 and got.ndim == 3 and got.shape[2] == 3, name
    got = load_upright(tmp_path / "deep.png", BIG)
    assert np.abs(got[..., 0].astype(int) - gray.astype(int)).max() <= 1
    got = load_upright(tmp_path / "rgba.png", BIG)
    assert np.array_equal(got, quadrants(40, 20))  # alpha dropped, colour untouched


def test_animated_gif_gives_its_first_frame(tmp_path: Path) -> None:
    anim = cv2.Animation()
    red = np.zeros((30, 40, 3), np.uint8)
    red[:] = (0, 0, 255)
    blue = np.zeros((30, 40, 3), np.uint8)
    blue[:] = (255, 0, 0)
    anim.frames, anim.durations = [red, blue], [100, 100]
    ok, buf = cv2.imencodeanimation(".gif", anim)
    assert ok
    got = load_upright(write(tmp_path, "a.gif", buf.tobytes()), BIG)
    assert got.shape == (30, 40, 3)
    assert got[..., 2].mean() > 200 and got[..., 0].mean() < 50


# --- failures -------------------------------------------------------------------------------


def test_broken_files_raise_permanent_photo_errors(tmp_path: Path) -> None:
    jpeg = encode(".jpg", quadrants(200, 100))
    png = encode(".png", quadrants(200, 100))
    cases = {
        "text.jpg": b"just some text",
        "cut.jpg": jpeg[: len(jpeg) // 2],
        "cut.png": png[: len(png) // 2],
        "garbage.jpg": jpeg[:200] + bytes(range(256)) * 4,
        "header-only.jpg": jpeg[:20],
    }
    for name, data in cases.items():
        with pytest.raises(PhotoError) as e:
            load_upright(write(tmp_path, name, data), BIG)
        assert not e.value.transient, name
        assert e.value.reason, name


def test_empty_missing_and_unreadable_files_are_transient(tmp_path: Path) -> None:
    with pytest.raises(PhotoError, match="empty") as e:
        load_upright(write(tmp_path, "empty.jpg", b""), BIG)
    assert e.value.transient
    with pytest.raises(PhotoError, match="vanished") as e:
        load_upright(tmp_path / "nope.jpg", BIG)
    assert e.value.transient
    with pytest.raises(PhotoError, match="directory") as e:
        load_upright(tmp_path, BIG)
    assert not e.value.transient


def test_truncated_file_that_is_still_growing_is_transient(tmp_path: Path) -> None:
    jpeg = encode(".jpg", quadrants(200, 100))
    p = write(tmp_path, "growing.jpg", jpeg[: len(jpeg) // 2])
    photo = read_photo(p, BIG)
    with p.open("ab") as f:  # the copy goes on after we read
        f.write(jpeg[len(jpeg) // 2 :])
    with pytest.raises(PhotoError, match="changed while being read") as e:
        decode(photo)
    assert e.value.transient


def test_photo_error_keeps_transient_across_pickle() -> None:
    e = pickle.loads(pickle.dumps(PhotoError("busy", transient=True)))
    assert isinstance(e, PhotoError) and e.transient and e.reason == "busy"


@pytest.mark.parametrize(("shrink", "reduction"), [(8.0, 8), (5.3, 4), (2.7, 2), (1.6, 1)])
def test_load_reduced_decodes_only_as_sharp_as_asked(
    tmp_path: Path, shrink: float, reduction: int
) -> None:
    img = quadrants(1600, 1200)
    path = tmp_path / "turned.jpg"
    path.write_bytes(with_exif(encode(".jpg", img), 6))  # stored landscape, shown portrait
    image, scale = load_reduced(path, BIG, shrink)
    assert image.shape[:2] == (1600 // reduction, 1200 // reduction)  # upright
    assert scale == pytest.approx(1 / reduction)


def test_load_reduced_reads_other_formats_whole(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(encode(".png", quadrants(160, 120)))
    image, scale = load_reduced(path, BIG, 16.0)
    assert image.shape[:2] == (120, 160) and scale == 1.0


# -- sniffed before read whole (issue 21 item 10) ----------------------------------------


def _sparse(path: Path, head: bytes, size: int) -> Path:
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)  # a hole: no disk space, but reading it whole costs `size` bytes
    return path


def _peak_while(fn) -> int:  # noqa: ANN001
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_a_huge_file_that_is_no_photo_is_refused_from_its_head(tmp_path: Path) -> None:
    video = _sparse(tmp_path / "holiday-video.jpg", b"\0\0\0\x18ftypqt  \0\0\0\0", 256 << 20)

    def read() -> None:
        with pytest.raises(PhotoError, match="video"):
            read_photo(video, 10**8)

    assert _peak_while(read) < 4 << 20  # bytes: the head, not the file


def test_a_file_far_above_any_photo_s_size_is_refused_unread(tmp_path: Path) -> None:
    big = _sparse(tmp_path / "big.jpg", encode(".jpg", quadrants()), 48 << 20)

    def read() -> None:
        with pytest.raises(PhotoError, match="max_file_mb = 16"):
            read_photo(big, 10**8, max_bytes=16 << 20)

    assert _peak_while(read) < 4 << 20
    assert read_photo(big, 10**8, max_bytes=64 << 20).info.format == "jpeg"  # under it: read


# --- the JPEG decoder -------------------------------------------------------------------------


def _textured(height: int, width: int) -> np.ndarray:
    """Smooth noise of an odd size: every block differs and the edge blocks are partial."""
    rng = np.random.default_rng(7)
    return cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), np.uint8), (7, 7), 0)


def _pil_jpeg(image: np.ndarray, mode: str, **kwargs: object) -> bytes:
    from io import BytesIO

    from PIL import Image

    out = BytesIO()
    Image.fromarray(image[:, :, ::-1]).convert(mode).save(out, "JPEG", quality=90, **kwargs)
    return out.getvalue()


@pytest.mark.parametrize(
    ("mode", "kwargs"),
    [
        ("RGB", {}),  # 4:2:0, what cameras write
        ("RGB", {"subsampling": 0}),  # 4:4:4
        ("RGB", {"subsampling": 1}),  # 4:2:2
        ("RGB", {"progressive": True}),
        ("L", {}),
        ("CMYK", {}),
    ],
)
@pytest.mark.parametrize("reduction", [1, 2, 4, 8])
def test_jpeg_decode_gives_opencv_s_pixels_exactly(
    tmp_path: Path, mode: str, kwargs: dict, reduction: int
) -> None:
    # Faces' vectors must not change with the decoder: the very same pixels, every kind.
    data = _pil_jpeg(_textured(301, 403), mode, **kwargs)
    photo = read_photo(write(tmp_path, "t.jpg", data), BIG)
    theirs = cv2.imdecode(
        np.frombuffer(data, np.uint8),
        {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
         8: cv2.IMREAD_REDUCED_COLOR_8}[reduction] | cv2.IMREAD_IGNORE_ORIENTATION,
    )
    got = decode(photo, reduction)
    assert got.shape == theirs.shape and np.array_equal(got, theirs)


def test_jpeg_decode_uses_libjpeg_turbo_and_falls_back_to_opencv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from daemon.indexer import image

    data = _pil_jpeg(_textured(120, 160), "RGB")
    photo = read_photo(write(tmp_path, "t.jpg", data), BIG)
    calls: list[int] = []
    real = image.simplejpeg.decode_jpeg

    def counted(*args: object, **kwargs: object) -> np.ndarray:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(image.simplejpeg, "decode_jpeg", counted)
    first = decode(photo, 2)
    assert calls and first.shape == (60, 80, 3)

    def refuses(*args: object, **kwargs: object) -> np.ndarray:
        raise ValueError("Unsupported color conversion request")

    monkeypatch.setattr(image.simplejpeg, "decode_jpeg", refuses)
    assert np.array_equal(decode(photo, 2), first)  # OpenCV decoded it instead
