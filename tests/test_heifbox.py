"""The HEIC fast path (box parser + FFmpeg decode) against libheif on the same files.

Files come from pillow-heif's encoder (tests/formats.py); grids, which that encoder does
not write, are assembled here from single-image HEICs' HEVC streams by a small writer
that follows ISO 23008-12 (an iPhone's layout: a ``grid`` item whose descriptor lives in
``idat``, ``dimg`` references to its tiles, ``irot`` on the grid).
"""

from __future__ import annotations

import io
import struct

import cv2
import formats
import numpy as np
import pytest

from daemon.indexer import heif, heifbox, heifdecode

# libheif and FFmpeg round YUV->RGB differently: off by one or two levels, never more.
MEAN_DIFF = 1.0


def libheif(data: bytes) -> np.ndarray:
    import pillow_heif

    return np.asarray(pillow_heif.open_heif(io.BytesIO(data), bgr_mode=True))


def fast(data: bytes) -> np.ndarray:
    return heifdecode.decode(heifbox.primary_layout(data))


def assert_same_picture(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    assert np.abs(got.astype(np.int16) - want).mean() < MEAN_DIFF


@pytest.mark.parametrize("orientation", range(1, 9))
def test_turns_like_libheif(face_photo: np.ndarray, orientation: int) -> None:
    data = formats.heic_bytes(face_photo, orientation)
    assert_same_picture(fast(data), libheif(data))


def test_exif_only_turn_is_left_to_the_caller(face_photo: np.ndarray) -> None:
    data = formats.heic_exif_only(face_photo, 6)
    layout = heifbox.primary_layout(data)
    assert layout.transforms == ()
    assert_same_picture(heifdecode.decode(layout), libheif(data))


def test_burst_gives_its_primary(face_photo: np.ndarray) -> None:
    first = cv2.flip(face_photo, 0)
    data = formats.heic_burst(first, face_photo)
    assert_same_picture(fast(data), libheif(data))
    assert np.abs(fast(data).astype(np.int16) - face_photo).mean() < 8


def test_ten_bit_and_avif_are_left_to_the_libraries(face_photo: np.ndarray) -> None:
    with pytest.raises(heifbox.Unsupported, match="10-bit"):
        heifbox.primary_layout(formats.heic_10bit(face_photo))
    with pytest.raises(heifbox.Unsupported, match="av1C|av01"):
        heifbox.primary_layout(formats.avif_bytes(face_photo))
    # heif.decode still reads them, through the libraries
    assert heif.decode(formats.heic_10bit(face_photo), "heif").shape == face_photo.shape


# -- grids ---------------------------------------------------------------------------------


def _box(kind: bytes, body: bytes, full: tuple[int, int] | None = None) -> bytes:
    if full is not None:
        body = struct.pack(">I", full[0] << 24 | full[1]) + body
    return struct.pack(">I4s", 8 + len(body), kind) + body


def _hevc_of(tile: np.ndarray) -> tuple[bytes, bytes]:
    """(hvcC box body, coded data) of ``tile`` encoded alone, no EXIF: mdat holds only it."""
    import pillow_heif

    buf = io.BytesIO()
    pillow_heif.from_pillow(formats._pil(tile)).save(buf, quality=90)
    data = buf.getvalue()
    at = data.index(b"hvcC") - 4
    (size,) = struct.unpack_from(">I", data, at)
    mdat = data.index(b"mdat") - 4
    return data[at + 8 : at + size], data[mdat + 8 :]


def grid_heic(image: np.ndarray, tile: int, rotation: int = 0, mirror: int | None = None) -> bytes:
    """``image`` as an iPhone-style grid HEIC of ``tile``-px tiles, turned by irot/imir."""
    h, w = image.shape[:2]
    rows, cols = -(-h // tile), -(-w // tile)
    padded = cv2.copyMakeBorder(image, 0, rows * tile - h, 0, cols * tile - w,
                                cv2.BORDER_REPLICATE)
    coded = [_hevc_of(padded[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile])
             for r in range(rows) for c in range(cols)]
    n = len(coded)
    ids = list(range(2, n + 2))
    infe = [_box(b"infe", struct.pack(">HH4s", 1, 0, b"grid") + b"\0", (2, 0))]
    infe += [_box(b"infe", struct.pack(">HH4s", i, 0, b"hvc1") + b"\0", (2, 0)) for i in ids]
    iinf = _box(b"iinf", struct.pack(">H", len(infe)) + b"".join(infe), (0, 0))
    iref = _box(b"iref", _box(b"dimg", struct.pack(">HH", 1, n) + struct.pack(f">{n}H", *ids)),
                (0, 0))
    props = [_box(b"hvcC", hvcc) for hvcc, _ in coded]
    props += [_box(b"ispe", struct.pack(">II", tile, tile), (0, 0)),
              _box(b"ispe", struct.pack(">II", w, h), (0, 0)),
              _box(b"irot", bytes([rotation])),
              _box(b"imir", bytes([mirror or 0]))]
    # the grid's ispe, then irot and imir (essential), in the order they apply
    grid_props = [n + 2, n + 3 | 0x80] + ([n + 4 | 0x80] if mirror is not None else [])
    entries = [struct.pack(">HB", 1, len(grid_props)) + bytes(grid_props)]
    entries += [struct.pack(">HBBB", i, 2, (k + 1) | 0x80, n + 1) for k, i in enumerate(ids)]
    ipma = _box(b"ipma", struct.pack(">I", len(entries)) + b"".join(entries), (0, 0))
    iprp = _box(b"iprp", _box(b"ipco", b"".join(props)) + ipma)
    descriptor = struct.pack(">BBBBHH", 0, 0, rows - 1, cols - 1, w, h)

    def iloc(first: int) -> bytes:
        body = struct.pack(">BBH", 0x44, 0x00, n + 1)  # 4-byte offsets/lengths, version 1
        body += struct.pack(">HHHHII", 1, 1, 0, 1, 0, len(descriptor))  # in idat
        offset = first
        for i, (_, payload) in zip(ids, coded, strict=True):
            body += struct.pack(">HHHHII", i, 0, 0, 1, offset, len(payload))
            offset += len(payload)
        return _box(b"iloc", body, (1, 0))

    ftyp = _box(b"ftyp", b"heic" + struct.pack(">I", 0) + b"mif1heic")
    hdlr = _box(b"hdlr", struct.pack(">I4s12s", 0, b"pict", b"") + b"\0", (0, 0))
    pitm = _box(b"pitm", struct.pack(">H", 1), (0, 0))
    rest = [hdlr, pitm, iinf, iref, iprp, _box(b"idat", descriptor)]
    meta_size = len(_box(b"meta", b"".join(rest) + iloc(0), (0, 0)))
    first = len(ftyp) + meta_size + 8
    meta = _box(b"meta", b"".join(rest[:2]) + iloc(first) + b"".join(rest[2:]), (0, 0))
    mdat = _box(b"mdat", b"".join(p for _, p in coded))
    return ftyp + meta + mdat


@pytest.mark.parametrize(("rotation", "mirror"), [(0, None), (1, None), (3, 0), (2, 1)])
def test_grid_assembled_and_turned_like_libheif(
    face_photo: np.ndarray, rotation: int, mirror: int | None
) -> None:
    data = grid_heic(face_photo, 64, rotation, mirror)
    layout = heifbox.primary_layout(data)
    assert (layout.rows, layout.cols, len(layout.tiles)) == (4, 5, 20)
    got = heifdecode.decode(layout)
    assert_same_picture(got, libheif(data))
    if (rotation, mirror) == (0, None):
        assert np.abs(got.astype(np.int16) - face_photo).mean() < 8  # the picture, not just a match


def test_heif_decode_takes_the_fast_path(face_photo: np.ndarray, monkeypatch) -> None:
    data = formats.heic_bytes(face_photo, 6)
    calls = []
    real = heifdecode.decode
    monkeypatch.setattr(heifdecode, "decode", lambda layout: calls.append(layout) or real(layout))
    assert_same_picture(heif.decode(data, "heif"), libheif(data))
    assert len(calls) == 1


# -- hostile input -------------------------------------------------------------------------


def test_cut_or_damaged_containers_raise_only_unsupported(face_photo: np.ndarray) -> None:
    data = grid_heic(face_photo, 128, 1)
    meta_end = data.index(b"mdat")
    rng = np.random.default_rng(7)
    outcomes = set()
    for cut in range(0, meta_end + 64, 7):
        outcomes.add(_outcome(data[:cut]))
    for at in rng.integers(0, meta_end, 300):
        damaged = bytearray(data)
        damaged[at] ^= int(rng.integers(1, 256))
        outcomes.add(_outcome(bytes(damaged)))
    assert "unsupported" in outcomes and "layout" in outcomes


def _outcome(data: bytes) -> str:
    try:
        heifbox.primary_layout(data)
    except heifbox.Unsupported:
        return "unsupported"
    return "layout"


def test_damaged_tile_data_gives_what_libheif_gives(face_photo: np.ndarray) -> None:
    # Both HEVC decoders conceal damaged slices rather than refuse them (measured: the
    # picture is far from the photo either way); the fast path must not be worse, nor
    # stricter, than the libheif it replaces.
    data = bytearray(formats.heic_bytes(face_photo))
    mdat = bytes(data).index(b"mdat")
    data[mdat + 40 : mdat + 400] = b"\xff" * 360
    damaged = bytes(data)
    assert_same_picture(fast(damaged), libheif(damaged))  # the fast path did decode it
    assert_same_picture(heif.decode(damaged, "heif"), libheif(damaged))


def test_a_failing_fast_path_falls_back_to_libheif(face_photo: np.ndarray, monkeypatch) -> None:
    def broken(layout: heifbox.Layout) -> np.ndarray:
        raise TypeError("an older PyAV without this keyword")

    data = formats.heic_bytes(face_photo, 6)
    monkeypatch.setattr(heifdecode, "decode", broken)
    assert_same_picture(heif.decode(data, "heif"), libheif(data))


def test_coded_size_must_agree_with_the_stated_one(face_photo: np.ndarray) -> None:
    data = formats.heic_bytes(face_photo)
    layout = heifbox.primary_layout(data)
    assert heifbox.sps_size(layout.tiles[0].hvcc) == (320, 240)
    # a container stating less than the HEVC stream codes: the decoder would allocate a
    # frame the pixel-bomb check never saw, so the fast path declines it
    with pytest.raises(heifbox.Unsupported, match="coded 320x240"):
        heifbox.primary_layout(formats.with_ispe(data, 100))


def test_grid_tiles_must_fit_the_stated_size() -> None:
    from daemon.indexer.heifbox import _covers

    assert _covers(512, 8, 4032) and _covers(512, 6, 3072)  # an iPhone's 4032x3024 grid
    assert not _covers(512, 7, 4032)  # a gap
    assert not _covers(512, 8, 3000)  # a whole spare tile
    assert not _covers(16384, 1, 100)  # a huge tile under a small stated size
