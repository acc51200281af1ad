"""Heavy-tailed people for the clustering benches: do people with many photos stay whole?

Whole-library pair and BCubed scores hide a person cut into pieces when most people have
a few photos: LFW-dev has one person over 60 photos. So the benches also report, per
*big* person (at least 20 or 40 faces), the share of their faces in their largest album,
how many albums they are spread over, and the smallest such share.

The LFW-dev people with >= 20 photos are rebuilt as a library the way a user's folder
would be scanned (issue 19): each photo centre-cropped to 170 x 170 (the 250-px LFW
frame mostly holds bystanders at its edges; the crop keeps the person's face), all
photos indexed by the real indexer, and every face found clustered together, with its
photo id and detector score as ``facecluster scan`` passes them. A photo's person is the
face nearest its centre; any other face is a bystander, scored as a person of its own.
Embeddings are cached in ``.bench-cache/`` (git-ignored).
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

sys.path.insert(0, str(REPO / "bench"))

from family_corpus import indexed  # noqa: E402

from daemon.config import Config, DetectionConfig, EngineConfig  # noqa: E402

NOISE = -1
CROP = 170
"""Side of the centre crop of each 250-px LFW photo (issue 19's protocol)."""


@dataclass(frozen=True)
class Library:
    """Every face found in a library: who it is (truth), its photo, score and vector."""

    person: np.ndarray
    """Truth per face: the photo's person for its centre face, a bystander id otherwise."""
    photo: np.ndarray
    """A photo id string per face (faces of one photo share it)."""
    score: np.ndarray
    vectors: np.ndarray
    """NaN rows for photos in which no face was found (scored as noise)."""
    photos_total: int
    engine: str

    @property
    def found(self) -> np.ndarray:
        return ~np.isnan(self.vectors[:, 0])

    def subset(self, keep: np.ndarray) -> Library:
        return Library(self.person[keep], self.photo[keep], self.score[keep],
                       self.vectors[keep], len(np.unique(self.photo[keep])), self.engine)

    def people_with(self, min_photos: int) -> Library:
        """Only the people with >= ``min_photos`` photos, and the bystanders of them."""
        names, counts = np.unique(self.person, return_counts=True)
        keep = np.isin(self.photo, self.photo[np.isin(self.person, names[counts >= min_photos])])
        return self.subset(keep)


def lfw_people(data: Path, min_photos: int) -> list[Path]:
    """The photos of the people of ``data`` (``<person>/<photo>``) with >= ``min_photos``."""
    out = []
    for person in sorted(p for p in data.iterdir() if p.is_dir()):
        photos = sorted(q for q in person.iterdir() if q.suffix.lower() in {".jpg", ".png"})
        if len(photos) >= min_photos:
            out += photos
    return out


def embed_lfw_crops(data: Path, models: Path, cache: Path, min_photos: int = 20,
                    workers: int = 1) -> Library:
    """Index LFW's people with >= ``min_photos`` photos, centre-cropped, or load the cache."""
    from daemon.indexer import engine_id_for

    paths = lfw_people(data, min_photos)
    engine_cfg = EngineConfig(detector="yunet", embedder="dlib", models_dir=models)
    engine = engine_id_for(engine_cfg)
    key = hashlib.sha256(
        f"{data.resolve()}|{engine}|{len(paths)}|{CROP}".encode()).hexdigest()[:16]
    cached = cache / f"lfw-crops-{engine}-{key}.npz"
    if cached.is_file():
        z = np.load(cached)
        return Library(z["person"], z["photo"], z["score"], z["vectors"], len(paths), engine)
    cfg = Config(engine=engine_cfg, detection=DetectionConfig(), workers=workers)
    person, photo, score, vectors = [], [], [], []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lfw-crops-") as tmp:
        import cv2

        origin: dict[Path, Path] = {}
        for p in paths:
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            h, w = img.shape[:2]
            y0, x0 = max(0, (h - CROP) // 2), max(0, (w - CROP) // 2)
            out = Path(tmp) / f"{p.parent.name}__{p.name}"
            cv2.imwrite(str(out), img[y0:y0 + CROP, x0:x0 + CROP])
            origin[out] = p
        for done, path, result in indexed(cfg, sorted(origin)):
            src = origin[path]
            centre = _centre_index(result)
            if centre < 0:  # no face: scored as noise (costs recall, never precision)
                person.append(src.parent.name)
                photo.append(f"{src.parent.name}/{src.name}")
                score.append(np.nan)
                vectors.append(np.full(128, np.nan, np.float32))
            for k, face in enumerate(result.faces):
                who = src.parent.name if k == centre else f"~bystander/{src.name}/{k}"
                person.append(who)
                photo.append(f"{src.parent.name}/{src.name}")
                score.append(face.score)
                vectors.append(face.embedding)
            if done % 250 == 0:
                print(f"  indexed {done}/{len(origin)} in {time.monotonic() - t0:.0f} s",
                      file=sys.stderr, flush=True)
    lib = Library(np.array(person), np.array(photo), np.array(score, np.float64),
                  np.array(vectors, np.float32).reshape(len(person), -1), len(paths), engine)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(cached, person=lib.person, photo=lib.photo, score=lib.score,
             vectors=lib.vectors)
    return lib


def _centre_index(indexed) -> int:
    """Index of the face whose box centre is nearest the photo's centre (-1: none)."""
    if not indexed.faces:
        return -1
    cx, cy = indexed.width / 2, indexed.height / 2
    off = [(f.box[0] + f.box[2] / 2 - cx) ** 2 + (f.box[1] + f.box[3] / 2 - cy) ** 2
           for f in indexed.faces]
    return int(np.argmin(off))


@dataclass(frozen=True)
class Spread:
    """How one big person's faces are spread over albums."""

    person: str
    faces: int
    largest_share: float
    """Share of the person's faces in the album holding most of them (0: none placed)."""
    albums: int
    """Albums holding at least one of the person's faces."""
    unplaced: int
    """Faces in no album (noise)."""


def spreads(truth: np.ndarray, labels: np.ndarray, min_faces: int) -> list[Spread]:
    """Per person with >= ``min_faces`` faces, how their faces lie across albums."""
    out = []
    names, counts = np.unique(truth, return_counts=True)
    for name in names[counts >= min_faces]:
        lab = labels[truth == name]
        placed = lab[lab != NOISE]
        sizes = np.bincount(placed - placed.min()) if len(placed) else np.zeros(0, int)
        out.append(Spread(str(name), len(lab), float(sizes.max(initial=0)) / len(lab),
                          int((sizes > 0).sum()), int((lab == NOISE).sum())))
    return out


def summary(truth: np.ndarray, labels: np.ndarray, sizes: tuple[int, ...] = (20, 40)) -> str:
    """One cell per size: people, how many hold >= 90 % in one album, the smallest share
    and the most albums one is spread over (e.g. ``26: 24 ≥90%, min 0.20, max 7 albums``)."""
    cells = []
    for size in sizes:
        s = spreads(truth, labels, size)
        if not s:
            cells.append(f"≥{size}: none")
            continue
        low = min(s, key=lambda x: x.largest_share)
        whole = sum(x.largest_share >= 0.9 for x in s)
        cells.append(f"≥{size}: {whole}/{len(s)} ≥90%, min {low.largest_share:.2f}, "
                     f"max {max(x.albums for x in s)} albums")
    return "; ".join(cells)


def worst(truth: np.ndarray, labels: np.ndarray, min_faces: int, n: int = 5) -> str:
    """The ``n`` big people with the smallest largest-album share, one per line."""
    s = sorted(spreads(truth, labels, min_faces), key=lambda x: x.largest_share)[:n]
    return "\n".join(f"    {x.person}: {x.faces} faces, largest album {x.largest_share:.0%}, "
                     f"{x.albums} albums, {x.unplaced} in none" for x in s)
