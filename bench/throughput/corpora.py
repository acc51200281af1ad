"""The photos the bench indexes, made once into a cache folder outside the repository.

Two corpora of 4000x3000 JPEGs (quality 90, sensor-like grain), a quarter of them
portrait (stored sideways with an EXIF orientation tag, as phones do):

- ``today``: a no-face photo from the shared test data scaled up as background with 0-6
  LFW faces pasted in at 90-700 px, each slot a different LFW person (so nobody recurs),
  plus a few real photos from ``photos/known`` and ``photos/groups`` scaled up whole.
- ``people``: a library's shape. A dozen LFW-dev people who each have many photos recur
  across the corpus, 1-4 per photo, faces 40 to 1,000 px tall (log-uniform), pasted into
  the no-face backgrounds, so the whole ``scan`` clusters them and writes their albums,
  thumbnails and montages.

Either can be had as HEIC (pillow-heif's encoder, the turn as ``irot`` as phones write
it) or as DNGs whose embedded preview is the full-size JPEG (as cameras embed it).
"""

from __future__ import annotations

import math
import random
import shutil
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from bench.throughput.common import CACHE, REPO, SHARED, H, W

CORPUS_VERSION = 2
PEOPLE_VERSION = 1
FACE_SHARE = 0.44
"""An LFW face's box height as a share of its 250 px image: pasted side = face px / this."""

Box = tuple[float, float, float, float]


@dataclass
class CorpusPhoto:
    path: Path
    truth: list[Box]
    """Pasted faces (x, y, w, h) in upright full-resolution pixels; empty for whole photos."""
    orientation: int = 1
    people: tuple[str, ...] = ()
    """Who each truth box is (the ``people`` corpus only)."""


def _exif_orientation(orientation: int) -> bytes:
    """An APP1 segment holding only an EXIF orientation tag."""
    tiff = b"MM\0*" + struct.pack(">I", 8) + struct.pack(">H", 1)
    tiff += struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    body = b"Exif\0\0" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body


def _fill(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """Crop ``img`` to the aspect of w x h and scale it to exactly that size."""
    ih, iw = img.shape[:2]
    if iw / ih > w / h:
        cw = int(ih * w / h)
        img = img[:, (iw - cw) // 2 : (iw - cw) // 2 + cw]
    else:
        ch = int(iw * h / w)
        img = img[(ih - ch) // 2 : (ih - ch) // 2 + ch]
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC)


def _paste(canvas: np.ndarray, face: np.ndarray, x: int, y: int) -> None:
    """Blend ``face`` in with a feathered edge so no hard seam looks like structure."""
    h, w = face.shape[:2]
    mask = np.zeros((h, w), np.float32)
    m = max(2, w // 12)
    mask[m:-m, m:-m] = 1.0
    mask = cv2.GaussianBlur(mask, (0, 0), m / 2)[..., None]
    region = canvas[y : y + h, x : x + w].astype(np.float32)
    canvas[y : y + h, x : x + w] = (face * mask + region * (1 - mask)).astype(np.uint8)


def _save(upright: np.ndarray, path: Path, orientation: int, rng: np.random.Generator) -> None:
    grain = rng.normal(0, 3.0, upright.shape).astype(np.float32)
    img = np.clip(upright.astype(np.float32) + grain, 0, 255).astype(np.uint8)
    if orientation == 6:  # displayed = stored turned 90 degrees clockwise
        img = cv2.rotate(img, cv2.ROTATE_90_COUNTERCLOCKWISE)
    elif orientation == 8:
        img = cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE)
    data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    if orientation != 1:
        data = data[:2] + _exif_orientation(orientation) + data[2:]
    path.write_bytes(data)


def _place(rnd: random.Random, w: int, h: int, side: int, taken: list[tuple[int, int, int]],
           corner: bool = False) -> tuple[int, int] | None:
    """A free spot for a ``side`` square, apart from the centres ``taken``; None after 50
    tries. ``corner``: the ``today`` corpus's rule, which measured the distance from the
    new square's corner (kept so that corpus stays the one its figures were taken on)."""
    for _attempt in range(50):
        x, y = rnd.randrange(0, w - side), rnd.randrange(0, h - side)
        cx, cy = (x, y) if corner else (x + side // 2, y + side // 2)
        if all(abs(cx - a) > (side + s) / 2 + 20 or abs(cy - b) > (side + s) / 2 + 20
               for a, b, s in taken):
            return x, y
    return None


def _truth_box(x: int, y: int, side: int) -> Box:
    """Where the face of an LFW image pasted at (x, y) with ``side`` px lies."""
    return (x + 0.3 * side, y + 0.28 * side, 0.4 * side, 0.44 * side)


def _resized(path: Path, side: int) -> np.ndarray:
    img = cv2.imread(str(path))
    interp = cv2.INTER_AREA if side < img.shape[0] else cv2.INTER_CUBIC
    return cv2.resize(img, (side, side), interpolation=interp)


def _build(out: Path, n: int, seed: int,
           make: Callable[[int, random.Random], tuple[np.ndarray, int, list[Box], list[str]]]
           ) -> list[CorpusPhoto]:
    """Make ``n`` photos with ``make`` into ``out`` (atomically), or reuse what is there."""
    index = out / "truth.txt"
    if index.exists():
        return _read_index(out, index)
    tmp = out.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rnd, rng = random.Random(seed), np.random.default_rng(seed)
    lines = []
    for i in range(n):
        canvas, orientation, truth, people = make(i, rnd)
        path = tmp / f"IMG_{i:04d}.jpg"
        _save(canvas, path, orientation, rng)
        boxes = ";".join(",".join(f"{v:.1f}" for v in b) for b in truth)
        lines.append(f"{path.name}\t{orientation}\t{boxes}\t{';'.join(people)}")
    (tmp / "truth.txt").write_text("\n".join(lines) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return _read_index(out, index)


def _orientation(rnd: random.Random) -> tuple[int, int, int]:
    orientation = rnd.choice([1, 1, 1, 6, 1, 1, 8, 1])
    w, h = (W, H) if orientation == 1 else (H, W)
    return orientation, w, h


def build_corpus(n: int, seed: int) -> list[CorpusPhoto]:
    """The ``today`` corpus (see the module docstring), made once."""
    backgrounds = sorted((SHARED / "photos/no-faces").glob("*.jpg"))
    wholes = sorted((SHARED / "photos/known").glob("*/*.jpg")) + sorted(
        (SHARED / "photos/groups").glob("*.jpg")
    )
    lfw = sorted((SHARED / "faces/lfw-dev").glob("*/*.jpg"))

    def make(i: int, rnd: random.Random) -> tuple[np.ndarray, int, list[Box], list[str]]:
        orientation, w, h = _orientation(rnd)
        truth: list[Box] = []
        if i % 5 == 4:  # a real photo scaled up whole: real faces, no pasted truth
            return _fill(cv2.imread(str(rnd.choice(wholes))), w, h), orientation, truth, []
        canvas = _fill(cv2.imread(str(rnd.choice(backgrounds))), w, h)
        taken: list[tuple[int, int, int]] = []
        for _ in range(rnd.randint(0, 6)):
            side = int(250 * rnd.uniform(0.8, 5.0))  # the LFW face is ~0.45 of its image
            spot = _place(rnd, w, h, side, taken, corner=True)
            if spot is None:
                continue
            x, y = spot
            face = cv2.resize(cv2.imread(str(rnd.choice(lfw))), (side, side),
                              interpolation=cv2.INTER_CUBIC)
            _paste(canvas, face, x, y)
            taken.append((x + side // 2, y + side // 2, side))
            truth.append(_truth_box(x, y, side))
        return canvas, orientation, truth, []

    return _build(CACHE / f"corpus-v{CORPUS_VERSION}-n{n}-s{seed}", n, seed, make)


def _recurring_people(rnd: random.Random, count: int, min_photos: int) -> dict[str, list[Path]]:
    """``count`` LFW-dev people with at least ``min_photos`` images each, and their images."""
    folders = [d for d in sorted((SHARED / "faces/lfw-dev").iterdir()) if d.is_dir()]
    many = [d for d in folders if len(list(d.glob("*.jpg"))) >= min_photos]
    return {d.name: sorted(d.glob("*.jpg")) for d in rnd.sample(many, count)}


def _face_px(rnd: random.Random, low: float = 40.0, high: float = 1000.0) -> float:
    """A face height, log-uniform: as many small faces in the background as big portraits."""
    return math.exp(rnd.uniform(math.log(low), math.log(high)))


def build_people_corpus(n: int, seed: int, people: int = 12) -> list[CorpusPhoto]:
    """The ``people`` corpus (see the module docstring), made once."""
    backgrounds = sorted((SHARED / "photos/no-faces").glob("*.jpg"))
    setup = random.Random(seed * 7919)
    cast = _recurring_people(setup, people, 8)
    names = sorted(cast)

    def make(i: int, rnd: random.Random) -> tuple[np.ndarray, int, list[Box], list[str]]:
        orientation, w, h = _orientation(rnd)
        bg = cv2.imread(str(rnd.choice(backgrounds)))
        canvas = _fill(bg if rnd.random() < 0.5 else cv2.flip(bg, 1), w, h)
        taken: list[tuple[int, int, int]] = []
        truth: list[Box] = []
        who: list[str] = []
        for name in rnd.sample(names, rnd.choice([1, 1, 2, 2, 3, 4])):
            side = min(int(_face_px(rnd) / FACE_SHARE), min(w, h) - 40)
            spot = _place(rnd, w, h, side, taken)
            if spot is None:
                continue
            x, y = spot
            _paste(canvas, _resized(rnd.choice(cast[name]), side), x, y)
            taken.append((x + side // 2, y + side // 2, side))
            truth.append(_truth_box(x, y, side))
            who.append(name)
        return canvas, orientation, truth, who

    return _build(CACHE / f"people-v{PEOPLE_VERSION}-n{n}-s{seed}-p{people}", n, seed, make)


def _read_index(folder: Path, index: Path) -> list[CorpusPhoto]:
    photos = []
    for line in index.read_text().splitlines():
        name, orientation, boxes, *rest = line.split("\t")
        truth = [tuple(float(v) for v in b.split(",")) for b in boxes.split(";") if b]
        people = tuple(p for p in (rest[0] if rest else "").split(";") if p)
        photos.append(CorpusPhoto(folder / name, truth, int(orientation), people))  # type: ignore[arg-type]
    return photos


def matched(truth: list[tuple[float, ...]], centres: list[tuple[float, float]]) -> int:
    """How many truth boxes hold the centre of a distinct detection."""
    used: set[int] = set()
    hits = 0
    for x, y, w, h in truth:
        for i, (cx, cy) in enumerate(centres):
            if i not in used and x <= cx <= x + w and y <= cy <= y + h:
                used.add(i)
                hits += 1
                break
    return hits


HEIC_QUALITY = 80
"""The issue-23 HEIC corpus: pillow-heif's encoder at quality 80..."""
HEIC_PRESET = "ultrafast"
"""...with x265's ``ultrafast`` preset: 2.5 s of CPU per 12 MP photo instead of ~20
(``medium``), so the corpus can be made on a shared 2-core machine. It turns SAO off, so
its files decode ~15% faster than a phone's (388 vs 457 ms for ``fast``, which keeps
SAO, deblocking and 64 px CTUs on): HEIC figures from it flatter HEIC by about that."""


def _heic(stored: np.ndarray, orientation: int, exif: bytes) -> bytes:
    """A HEIC as a phone stores it: the pixels as stored, the turn as ``irot`` (pillow-heif
    writes the EXIF orientation it is given as the container's rotation)."""
    import io

    import pillow_heif
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(stored[..., ::-1]))
    buf = io.BytesIO()
    pillow_heif.from_pillow(image).save(buf, quality=HEIC_QUALITY, exif=exif,
                                        enc_params={"preset": HEIC_PRESET})
    return buf.getvalue()


def sys_path_tests() -> None:
    """Make ``tests/formats.py`` (the HEIC and DNG makers the tests use) importable."""
    if str(REPO / "tests") not in sys.path:
        sys.path.insert(0, str(REPO / "tests"))


def format_corpus(corpus: list[CorpusPhoto], kind: str) -> list[CorpusPhoto]:
    """The corpus as HEICs or as DNGs with a full-size JPEG preview (made once, cached)."""
    if kind == "jpeg":
        return corpus
    sys_path_tests()
    import formats  # the test makers: the DNG writer

    folder = corpus[0].path.parent.with_name(corpus[0].path.parent.name + f"-{kind}")
    folder.mkdir(exist_ok=True)
    out = []
    for p in corpus:
        dest = folder / p.path.with_suffix(".heic" if kind == "heic" else ".dng").name
        if not dest.exists():
            data = p.path.read_bytes()
            stored = cv2.imdecode(np.frombuffer(data, np.uint8),
                                  cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
            if kind == "heic":
                blob = _heic(stored, p.orientation, formats._exif(p.orientation))
            else:
                blob = formats.dng_bytes(data, stored.shape[1], stored.shape[0], p.orientation)
            tmp = dest.with_suffix(".tmp")
            tmp.write_bytes(blob)
            tmp.rename(dest)
        out.append(replace(p, path=dest))
    return out


def one_photo_folder(corpus: list[CorpusPhoto]) -> Path:
    """A folder holding one corpus photo with 1-3 faces: the start-up probe."""
    folder = CACHE / f"one-photo-of-{corpus[0].path.parent.name}"
    pick = next((p for p in corpus if 1 <= len(p.truth) <= 3), corpus[0])
    target = folder / pick.path.name
    if not target.exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        shutil.copy(pick.path, target)
    return folder
