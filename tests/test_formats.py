"""HEIC, AVIF and camera RAW: read like their JPEG twins, refused safely when hostile.

Each file is made in the test from a real photo of the shared data with the libraries'
own encoders (HEIC, AVIF) or from the DNG specification (see :mod:`formats`), indexed by
the real offline engine (YuNet + dlib ResNet), and compared with the JPEG it came from:
same upright size, same faces, boxes within :data:`BOX_TOLERANCE` pixels.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import formats
import hostile
import numpy as np
import pytest

from daemon.config import DetectionConfig, EngineConfig, from_dict
from daemon.indexer import PhotoError, index_photo, load_upright, open_engine
from daemon.indexer import heif as heif_mod
from daemon.indexer import image as image_mod
from daemon.library.photos import is_wanted, raw_twin, walk_photos
from daemon.stages.pipeline import Pipeline

BOX_TOLERANCE = 8.0
LIMIT = 100_000_000
DET = DetectionConfig()
SMALL = Path("known") / "obama" / "obama_small.jpg"  # 320x240, one face
LARGE = Path("known") / "biden" / "biden2.jpg"  # 1200x1200, one face


@pytest.fixture(scope="module")
def engine(yunet_file: Path):
    return open_engine(
        EngineConfig(detector="yunet", embedder="dlib", models_dir=yunet_file.parent)
    )


@pytest.fixture(scope="module")
def small(shared_photos: Path) -> np.ndarray:
    image = cv2.imread(str(shared_photos / SMALL))
    assert image is not None
    return image


@pytest.fixture(scope="module")
def large(shared_photos: Path) -> np.ndarray:
    image = cv2.imread(str(shared_photos / LARGE))
    assert image is not None
    return image


MAKERS = {
    "heic": lambda up: formats.heic_bytes(up),
    "heic-turned-6": lambda up: formats.heic_bytes(up, 6),
    "heic-turned-8": lambda up: formats.heic_bytes(up, 8),
    "heic-exif-only-6": lambda up: formats.heic_exif_only(up, 6),
    "heic-10bit": lambda up: formats.heic_10bit(up),
    "avif": lambda up: formats.avif_bytes(up),
    "avif-turned-6": lambda up: formats.avif_bytes(up, 6),
    "avif-turned-3": lambda up: formats.avif_bytes(up, 3),
    "dng": lambda up: formats.dng_of(up),
    "dng-turned-6": lambda up: formats.dng_of(up, 6),
    "dng-turned-8": lambda up: formats.dng_of(up, 8),
}
SUFFIX = {"heic": ".heic", "avif": ".avif", "dng": ".dng"}


@pytest.mark.parametrize("kind", list(MAKERS))
def test_decodes_upright_like_the_jpeg(tmp_path: Path, small: np.ndarray, kind: str) -> None:
    path = formats.write(tmp_path, "photo" + SUFFIX[kind.split("-")[0]], MAKERS[kind](small))
    decoded = load_upright(path, LIMIT)
    assert decoded.dtype == np.uint8 and decoded.shape == small.shape, decoded.shape
    assert formats.decoded_like(decoded, small), float(cv2.absdiff(decoded, small).mean())


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(MAKERS))
def test_faces_match_the_jpeg_twin(
    tmp_path: Path, shared_photos: Path, large: np.ndarray, engine, kind: str
) -> None:
    twin = index_photo(shared_photos / LARGE, engine, DET)
    path = formats.write(tmp_path, "photo" + SUFFIX[kind.split("-")[0]], MAKERS[kind](large))
    got = index_photo(path, engine, DET)
    assert (got.width, got.height) == (twin.width, twin.height)
    assert len(twin.faces) >= 1 and len(got.faces) == len(twin.faces)
    for a, b in zip(
        sorted(got.faces, key=lambda f: f.box), sorted(twin.faces, key=lambda f: f.box),
        strict=True,
    ):
        worst = max(abs(x - y) for x, y in zip(a.box, b.box, strict=True))
        assert worst <= BOX_TOLERANCE, f"{kind}: box {a.box} vs JPEG {b.box}"
        assert float(np.linalg.norm(a.embedding - b.embedding)) < 0.3, "not the same face"


def test_burst_gives_its_primary_image(
    tmp_path: Path, shared_photos: Path, small: np.ndarray
) -> None:
    park = cv2.imread(str(shared_photos / "no-faces" / "park.jpg"))
    path = formats.write(tmp_path, "burst.heic", formats.heic_burst(park, small))
    decoded = load_upright(path, LIMIT)
    assert formats.decoded_like(decoded, small)


def test_heic_named_jpg_is_read_for_what_it_is(tmp_path: Path, small: np.ndarray) -> None:
    path = formats.write(tmp_path, "IMG_0001.JPG", formats.heic_bytes(small))
    assert formats.decoded_like(load_upright(path, LIMIT), small)


def test_raw_decode_uses_the_preview_reduced(tmp_path: Path, large: np.ndarray) -> None:
    """A RAW's JPEG preview is decoded through the DCT reduction like any JPEG."""
    path = formats.write(tmp_path, "IMG_0001.DNG", formats.dng_of(large))
    photo = image_mod.read_photo(path, LIMIT)
    assert photo.origin == "raw" and photo.info.format == "jpeg"
    assert photo.size == path.stat().st_size
    half = image_mod.decode(photo, 2)
    assert half.shape == (large.shape[0] // 2, large.shape[1] // 2, 3)


@pytest.mark.parametrize(("orientation", "shape"), [(1, (32, 48, 3)), (6, (48, 32, 3))])
def test_raw_without_a_preview_gets_a_half_size_render(
    tmp_path: Path, orientation: int, shape: tuple[int, int, int]
) -> None:
    path = formats.write(tmp_path, "old.dng", formats.dng_without_preview(96, 64, orientation))
    photo = image_mod.read_photo(path, LIMIT)
    assert photo.origin == "raw" and photo.pixels is not None
    assert load_upright(path, LIMIT).shape == shape  # half of 96x64, turned once
    assert "max_pixels" in _refusal(path, 96 * 64 - 1).reason


# -- hostile files of the new formats -------------------------------------------------------


def _refusal(path: Path, max_pixels: int = LIMIT) -> PhotoError:
    with pytest.raises(PhotoError) as info:
        load_upright(path, max_pixels)
    assert info.value.reason.strip()
    return info.value


HOSTILE = {
    "truncated.heic": lambda up: formats.heic_bytes(up)[:-2000],
    "truncated.avif": lambda up: formats.avif_bytes(up)[:-800],
    "truncated-raw.dng": lambda up: formats.dng_of(up)[:9000],
    "cut-preview.dng": lambda up: formats.dng_of(up)[: 8 + 64 * 64 * 2 + 3000]
    + formats.dng_of(up)[8 + 64 * 64 * 2 + 3000 :].replace(b"\xff\xd9", b"\0\0"),
    "text.heic": lambda up: b"this is not a picture\n" * 20,
    "random.cr2": lambda up: np.random.default_rng(3).bytes(8192),
    "random.nef": lambda up: b"II*\0" + np.random.default_rng(4).bytes(8192),
    "clip.heic": lambda up: formats.mp4_named_like_a_photo(),
    "ftyp-only.avif": lambda up: formats.avif_bytes(up)[:40],
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_broken_new_formats_are_permanent_failures(
    tmp_path: Path, small: np.ndarray, name: str
) -> None:
    err = _refusal(formats.write(tmp_path, name, HOSTILE[name](small)))
    assert not err.transient, f"{name}: {err.reason}"


def test_a_video_named_heic_says_so(tmp_path: Path) -> None:
    err = _refusal(formats.write(tmp_path, "IMG_0001.HEIC", formats.mp4_named_like_a_photo()))
    assert "video" in err.reason and "isom" in err.reason


@pytest.mark.parametrize("name", ["empty.heic", "empty.avif", "empty.dng", "empty.CR3"])
def test_zero_byte_new_formats_are_transient(tmp_path: Path, name: str) -> None:
    assert _refusal(formats.write(tmp_path, name, b"")).transient


BOMB_SIDE = 12_000  # 144 MP: over LIMIT, yet under libheif's and libavif's own limits


@pytest.mark.parametrize("kind", ["heic", "avif", "dng"])
def test_bomb_headers_refused_before_decoding(
    tmp_path: Path, small: np.ndarray, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if kind == "dng":
        data = formats.dng_bomb(small, BOMB_SIDE)
    else:
        good = formats.heic_bytes(small) if kind == "heic" else formats.avif_bytes(small)
        data = formats.with_ispe(good, BOMB_SIDE)

    def no_decoding(*args, **kwargs):
        raise AssertionError("a decoder was called on a pixel bomb")

    monkeypatch.setattr(heif_mod, "decode", no_decoding)
    monkeypatch.setattr(image_mod.cv2, "imdecode", no_decoding)
    err = _refusal(formats.write(tmp_path, f"bomb.{kind}", data))
    assert not err.transient
    assert "max_pixels" in err.reason and f"{BOMB_SIDE}x{BOMB_SIDE}" in err.reason


def test_max_pixels_applies_to_heic(tmp_path: Path, small: np.ndarray) -> None:
    path = formats.write(tmp_path, "a.heic", formats.heic_bytes(small))
    h, w = small.shape[:2]
    assert load_upright(path, h * w).shape == small.shape
    assert "max_pixels" in _refusal(path, h * w - 1).reason


@pytest.mark.slow
def test_worker_pool_survives_hostile_new_formats(
    tmp_path: Path, small: np.ndarray, yunet_file: Path
) -> None:
    """Two worker processes index a folder of hostile and good new-format files."""
    root = tmp_path / "photos"
    root.mkdir()
    for name, make in HOSTILE.items():
        formats.write(root, name, make(small))
    formats.write(root, "bomb.heic", formats.with_ispe(formats.heic_bytes(small), BOMB_SIDE))
    formats.write(root, "bomb-raw.dng", formats.dng_bomb(small, BOMB_SIDE))  # bomb.heic's twin else
    formats.write(root, "empty.heic", b"")
    good = {
        "good.heic": formats.heic_bytes(small, 6),
        "good.avif": formats.avif_bytes(small),
        "good-raw.dng": formats.dng_of(small, 8),  # "good.dng" would be good.heic's twin
        "good-10bit.heic": formats.heic_10bit(small),
    }
    for name, data in good.items():
        formats.write(root, name, data)
    (root / "IMG_0001.MOV").write_bytes(formats.mp4_named_like_a_photo())  # Live Photo video
    cfg = from_dict(
        {"watch": ["photos"], "workers": 2,
         "engine": {"detector": "yunet", "embedder": "dlib",
                    "models_dir": str(yunet_file.parent)}},
        tmp_path,
    )
    with Pipeline(cfg) as pipeline:
        found = pipeline.discover()
        assert root / "IMG_0001.MOV" not in found, "a video is not a photo"
        report = pipeline.index_photos(found)
        records = {r.path.name: r for r in pipeline.store.iter_photos()}
    assert "IMG_0001.MOV" not in records
    bad = set(HOSTILE) | {"bomb.heic", "bomb-raw.dng", "empty.heic"}
    for name in bad:
        rec = records[name]
        assert rec.status == "failed" and rec.error, f"{name}: {rec}"
        assert "BytesIO" not in rec.error and "b'" not in rec.error, rec.error  # readable
    assert records["empty.heic"].transient
    for name in good:
        rec = records[name]
        assert rec.status == "indexed" and rec.face_count == 1, f"{name}: {rec}"
    assert report.failed == len(bad) and report.indexed == len(good)


# -- RAW + JPEG of one shot ----------------------------------------------------------------


def _cfg(tmp_path: Path, yunet_file: Path):
    return from_dict(
        {"watch": ["photos"], "albums_dir": "albums", "state_dir": "state", "workers": 1,
         "engine": {"detector": "yunet", "embedder": "dlib",
                    "models_dir": str(yunet_file.parent)}},
        tmp_path,
    )


def test_raw_with_a_jpeg_twin_is_not_listed(tmp_path: Path, yunet_file: Path) -> None:
    cfg = _cfg(tmp_path, yunet_file)
    root = tmp_path / "photos"
    root.mkdir()
    for name in ["IMG_1.CR2", "IMG_1.JPG", "IMG_2.NEF", "IMG_3.dng", "IMG_3.heic", "IMG_4.ARW"]:
        (root / name).write_bytes(b"x")
    (root / "other").mkdir()
    (root / "other" / "IMG_4.jpg").write_bytes(b"x")  # another folder: not a twin
    listed = {p.relative_to(root).as_posix() for p in walk_photos([root], cfg)}
    assert listed == {"IMG_1.JPG", "IMG_2.NEF", "IMG_3.heic", "IMG_4.ARW", "other/IMG_4.jpg"}
    assert raw_twin(root / "IMG_1.CR2") == root / "IMG_1.JPG"
    assert raw_twin(root / "IMG_1.JPG") is None and raw_twin(root / "IMG_2.NEF") is None
    assert not is_wanted(root / "IMG_1.CR2", cfg) and is_wanted(root / "IMG_2.NEF", cfg)


@pytest.mark.slow
def test_raw_indexed_before_its_jpeg_is_forgotten_when_the_jpeg_arrives(
    tmp_path: Path, small: np.ndarray, yunet_file: Path
) -> None:
    """The watcher's order on a card import: IMG_1.CR2 settles and is indexed, then IMG_1.JPG."""
    cfg = _cfg(tmp_path, yunet_file)
    root = tmp_path / "photos"
    root.mkdir()
    raw = formats.write(root, "IMG_1.CR2", formats.dng_of(small))
    with Pipeline(cfg, create=True) as pipeline:
        assert pipeline.index_photos([raw]).indexed == 1
        jpeg = formats.write(root, "IMG_1.JPG", hostile.encode_jpeg(small))
        pipeline.index_photos([jpeg])
        assert pipeline.store.photo(raw) is None
        assert pipeline.store.photo(jpeg).status == "indexed"
        assert pipeline.index_photos([raw]).indexed == 0, "a late event for the RAW re-indexed it"
        assert pipeline.store.photo(raw) is None


def _album_names(albums_dir: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for d in sorted(albums_dir.iterdir()):
        if d.is_dir() and not d.name.startswith("."):
            out[d.name] = {Path(os.path.realpath(e)).name for e in d.iterdir()}
    return out


@pytest.mark.slow
def test_raw_jpeg_pair_is_one_album_entry(
    tmp_path: Path, shared_photos: Path, yunet_file: Path
) -> None:
    cfg = _cfg(tmp_path, yunet_file)
    root = tmp_path / "photos"
    shutil.copytree(shared_photos / "known" / "obama", root / "obama")
    shutil.copytree(shared_photos / "known" / "biden", root / "biden")
    shot = root / "obama" / "obama2.jpg"
    pair_jpeg = shot.rename(root / "obama" / "IMG_0001.JPG")
    upright = cv2.imread(str(pair_jpeg))
    pair_raw = formats.write(root / "obama", "IMG_0001.DNG", formats.dng_of(upright, 6))

    with Pipeline(cfg, create=True) as pipeline:
        pipeline.scan()
        assert pipeline.store.photo(pair_raw) is None, "the RAW of a pair was indexed"
    albums = _album_names(tmp_path / "albums")
    holding = [a for a, names in albums.items() if "IMG_0001.JPG" in names]
    assert len(holding) == 1, albums
    assert all("IMG_0001.DNG" not in names for names in albums.values())
    obama = holding[0]
    assert {"obama.jpg", "obama-720p.jpg"} <= albums[obama]

    # The JPEG is deleted: the next scan reads the RAW, which takes its place.
    pair_jpeg.unlink()
    with Pipeline(cfg) as pipeline:
        pipeline.scan()
        rec = pipeline.store.photo(pair_raw)
        assert rec is not None and rec.status == "indexed" and rec.face_count >= 1
    albums = _album_names(tmp_path / "albums")
    assert "IMG_0001.DNG" in albums[obama]
    assert all("IMG_0001.JPG" not in names for names in albums.values())

    # The JPEG comes back (restored from a backup): the RAW is forgotten again.
    cv2.imwrite(str(pair_jpeg), upright)
    with Pipeline(cfg) as pipeline:
        pipeline.scan()
        assert pipeline.store.photo(pair_raw) is None
    albums = _album_names(tmp_path / "albums")
    assert "IMG_0001.JPG" in albums[obama] and "IMG_0001.DNG" not in albums[obama]
