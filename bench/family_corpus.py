"""Families In the Wild faces through the real indexer, cached: the family bench's data.

The Families In the Wild (FIW) face crops come from the public repository
``vuvko/fitw2020`` (folder ``train-faces-det``: ``F0001/MID1/P00001_face0.jpg`` is
family / person / photo id + face index). They are non-commercial research data: never
commit them or anything derived from them. Their location comes from ``FACECLUSTER_FIW``.

Each original photo (family + photo id) is rebuilt as one picture holding all its
faces in a grid (a group shot), indexed by the real indexer (detection + embedding, as
``facecluster scan`` does), and each detected face is matched back to its crop by the
grid cell its box centre falls in. Embeddings and quality signals are cached under
``.bench-cache/`` (gitignored).
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from daemon.config import Config, DetectionConfig, EngineConfig  # noqa: E402

HOW_TO_GET = (
    "Families In the Wild train crops: clone the public repository vuvko/fitw2020 and "
    "point FACECLUSTER_FIW at its folder train-faces-det (non-commercial research data: "
    "keep it outside the repository)."
)
CELL = 224
"""Grid cell side: a 112-px crop sits in the middle with a margin, as a face in a photo."""
PER_ROW = 4
"""Faces per grid row: four 224-px cells fit the indexer's 960-px detection size."""
_NAME = re.compile(r"^(P\d+)_face(\d+)$")


@dataclass(frozen=True)
class FiwFaces:
    """One row per FIW crop: who it is, which photo, and what the indexer found."""

    files: np.ndarray
    family: np.ndarray
    person: np.ndarray
    """``F0001/MID1``: unique over all families."""
    photo: np.ndarray
    """``F0001/P00001``: the original photo, shared by the faces of one group shot."""
    vectors: np.ndarray
    """Unit embeddings; NaN rows where the indexer found no face in the crop's cell."""
    score: np.ndarray
    """Detector score (what the store keeps)."""
    side: np.ndarray
    """Shorter box side in pixels (the store keeps the box)."""
    yaw: np.ndarray
    """Nose offset from the eyes' midpoint over the eye distance (from stored landmarks)."""
    sharp: np.ndarray
    """Variance of the Laplacian of the crop (NOT stored by the indexer: bench only)."""
    engine: str

    @property
    def found(self) -> np.ndarray:
        return ~np.isnan(self.vectors[:, 0])


def fiw_root() -> Path | None:
    env = os.environ.get("FACECLUSTER_FIW")
    return Path(env) if env else None


def list_crops(root: Path) -> list[tuple[Path, str, str, str]]:
    """(path, family, person, photo) of every crop, sorted; odd file names are skipped."""
    out = []
    for path in sorted(root.glob("F*/MID*/*.jpg")):
        m = _NAME.match(path.stem)
        if not m:
            continue
        family = path.parent.parent.name
        out.append((path, family, f"{family}/{path.parent.name}", f"{family}/{m.group(1)}"))
    return out


def compose(paths: list[Path]) -> np.ndarray:
    """One group-shot picture (BGR) holding the crops in a grid of ``CELL`` cells."""
    import cv2

    rows = (len(paths) + PER_ROW - 1) // PER_ROW
    cols = min(len(paths), PER_ROW)
    canvas = np.full((rows * CELL, cols * CELL, 3), 128, np.uint8)
    for i, p in enumerate(paths):
        crop = cv2.imread(str(p), cv2.IMREAD_COLOR)
        h, w = crop.shape[:2]
        y0 = (i // PER_ROW) * CELL + (CELL - h) // 2
        x0 = (i % PER_ROW) * CELL + (CELL - w) // 2
        canvas[y0:y0 + h, x0:x0 + w] = crop
    return canvas


def _yaw(landmarks) -> float:
    if len(landmarks) < 3:
        return np.nan
    (rx, ry), (lx, ly), (nx, ny) = landmarks[:3]
    eyes = max(np.hypot(lx - rx, ly - ry), 1e-6)
    return float(abs(nx - (rx + lx) / 2) / eyes)


def _sharpness(path: Path) -> float:
    import cv2

    grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def embed_fiw(root: Path, models: Path, cache: Path, workers: int = 1,
              limit: int = 0) -> FiwFaces:
    """Index every rebuilt group shot with the real YuNet + dlib indexer, or load the cache."""
    from daemon.indexer import engine_id_for

    crops = list_crops(root)
    by_photo: dict[str, list[int]] = defaultdict(list)
    for i, (_, _, _, photo) in enumerate(crops):
        by_photo[photo].append(i)
    photos = sorted(by_photo)[:limit] if limit else sorted(by_photo)
    keep = sorted(i for ph in photos for i in by_photo[ph])
    engine_cfg = EngineConfig(detector="yunet", embedder="dlib", models_dir=models)
    engine = engine_id_for(engine_cfg)
    key = hashlib.sha256(
        f"{root.resolve()}|{engine}|{len(keep)}|{CELL}|{PER_ROW}".encode()).hexdigest()[:16]
    cached = cache / f"fiw-{engine}-{key}.npz"
    files = np.array([str(crops[i][0].relative_to(root)) for i in keep])
    meta = [np.array([crops[i][j] for i in keep]) for j in (1, 2, 3)]
    if cached.is_file():
        z = np.load(cached)
        return FiwFaces(files, *meta, z["vectors"], z["score"], z["side"], z["yaw"],
                        z["sharp"], engine)
    row = {i: r for r, i in enumerate(keep)}
    n = len(keep)
    vectors = np.full((n, 128), np.nan, np.float32)
    score, side, yaw = (np.full(n, np.nan) for _ in range(3))
    sharp = np.array([_sharpness(crops[i][0]) for i in keep])
    cfg = Config(engine=engine_cfg, detection=DetectionConfig(), workers=workers)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fiw-shots-") as tmp:
        import cv2

        shot_of: dict[Path, list[int]] = {}
        for k, ph in enumerate(photos):
            members = by_photo[ph]
            shot = Path(tmp) / f"{k:05d}.png"
            cv2.imwrite(str(shot), compose([crops[i][0] for i in members]))
            shot_of[shot] = members
        for done, path, result in indexed(cfg, sorted(shot_of)):
            _match(result, shot_of[path], row, vectors, score, side, yaw)
            if done % 250 == 0:
                print(f"  indexed {done}/{len(shot_of)} shots in "
                      f"{time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(cached, vectors=vectors, score=score, side=side, yaw=yaw, sharp=sharp)
    return FiwFaces(files, *meta, vectors, score, side, yaw, sharp, engine)


def indexed(cfg: Config, paths: list[Path]):
    """(count so far, path, IndexedPhoto) for each photo the real indexer read; a photo
    it could not read is reported and skipped."""
    from daemon.indexer import IndexPool, PhotoError

    with IndexPool(cfg) as pool:
        for done, (path, result) in enumerate(pool.imap(paths), 1):
            if isinstance(result, PhotoError):
                print(f"  failed: {path}: {result.reason}", file=sys.stderr)
                continue
            yield done, path, result


def _match(result, members: list[int], row: dict[int, int], vectors: np.ndarray,
           score: np.ndarray, side: np.ndarray, yaw: np.ndarray) -> None:
    """Give each crop the detected face whose box centre lies in its cell (the best-scored
    one when several do)."""
    best: dict[int, object] = {}
    for face in result.faces:
        x, y, w, h = face.box
        cell = int((y + h / 2) // CELL) * PER_ROW + int((x + w / 2) // CELL)
        if 0 <= cell < len(members) and (cell not in best or face.score > best[cell].score):
            best[cell] = face
    for cell, face in best.items():
        r = row[members[cell]]
        vectors[r] = face.embedding
        score[r] = face.score
        side[r] = min(face.box[2], face.box[3])
        yaw[r] = _yaw(face.landmarks)
