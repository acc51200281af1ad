"""Choosing and opening an engine (detector + embedder), and indexing one photo with it.

``auto`` picks only engines whose settings were measured on this project's benchmarks:
YuNet + dlib when a verified YuNet file is present, else dlib HOG + dlib. SFace is opt-in
(``embedder = "sface"``): its clustering thresholds come from a published value, never
measured here, so a machine that happens to have its file must not switch to it.

The engine id (``<detector>+<embedder>``, each part naming its model version) is stored
with every embedding so that vectors of different models are never compared; model files
are accepted only with the manifest's sha256, so one id always means one set of weights.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import structlog

from daemon.config import DetectionConfig, EngineConfig
from daemon.indexer.crops import face_crops
from daemon.indexer.detect import Detection, Detector, DlibHogDetector, YuNetDetector
from daemon.indexer.embed import DlibEmbedder, Embedder, SFaceEmbedder
from daemon.indexer.image import PhotoBytes, decode, jpeg_reduction, read_photo
from daemon.indexer.models import ManifestError, MissingModelError, require_model, verified_model
from daemon.indexer.types import EngineError, Face, IndexedPhoto

log = structlog.get_logger(__name__)

# OpenCV's C++ warnings go straight to stderr and would break the JSON log lines (e.g. a
# harmless "Targets are not supported by the new graph engine" at every model load);
# every failure that matters is reported through our own logs.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

UPSCALE_LIMIT = 1.5
"""Largest upscale of a face into the embedder's chip before a sharper decode is taken."""


def unmeasured_note(engine_id: str) -> str | None:
    """A warning for ``status`` when ``engine_id`` uses an unmeasured embedder, else None."""
    if "+sface" in engine_id:
        return (
            "SFace is unmeasured here: its clustering thresholds come from a published "
            'value, not from this project\'s benchmarks (embedder = "dlib" is measured)'
        )
    return None


@dataclass(frozen=True)
class Engine:
    """A loaded detector and embedder; ``id`` names both models."""

    id: str
    dim: int
    detector: Detector
    embedder: Embedder


@dataclass(frozen=True)
class _Plan:
    detector: str  # "yunet" | "dlib-hog"
    embedder: str  # "sface" | "dlib"
    yunet: Path | None
    sface: Path | None
    reason: str

    @property
    def id(self) -> str:
        det = YuNetDetector.id if self.detector == "yunet" else DlibHogDetector.id
        emb = SFaceEmbedder.id if self.embedder == "sface" else DlibEmbedder.id
        return f"{det}+{emb}"


def _present(models_dir: Path, key: str) -> Path | None:
    try:
        return verified_model(models_dir, key)
    except ManifestError as e:
        raise EngineError(str(e)) from e


def _required(models_dir: Path, key: str, why: str) -> Path:
    try:
        return require_model(models_dir, key)
    except MissingModelError as e:
        raise EngineError(f"{why}, but {e}") from e
    except ManifestError as e:
        raise EngineError(str(e)) from e


def _plan(cfg: EngineConfig) -> _Plan:
    """Resolve ``auto`` and check the combination, looking only at which files are present."""
    models = Path(cfg.models_dir)
    if cfg.embedder == "sface" and cfg.detector == "dlib-hog":
        raise EngineError(
            'embedder = "sface" aligns faces on YuNet\'s five landmarks, which dlib-hog does '
            'not give; use detector = "yunet" (or "auto") or embedder = "dlib"'
        )
    if cfg.detector == "yunet" or cfg.embedder == "sface":
        why = 'detector = "yunet"' if cfg.detector == "yunet" else 'embedder = "sface" needs YuNet'
        yunet: Path | None = _required(models, "yunet", why)
    elif cfg.detector == "dlib-hog":
        yunet = None
    else:
        yunet = _present(models, "yunet")
    detector = "yunet" if yunet else "dlib-hog"

    if cfg.embedder == "sface":
        sface: Path | None = _required(models, "sface", 'embedder = "sface"')
        reason = "embedder set to sface"
    elif cfg.embedder == "dlib":
        sface, reason = None, "embedder set to dlib"
    elif detector != "yunet":
        sface, reason = None, "no YuNet model, so the offline dlib HOG + ResNet engine"
    else:
        sface, reason = None, "YuNet present; SFace is unmeasured, so only used if asked for"
    return _Plan(detector, "sface" if sface else "dlib", yunet, sface, reason)


def engine_id_for(engine_cfg: EngineConfig) -> str:
    """The id of the engine :func:`open_engine` would open, without loading any model.

    Raises :class:`EngineError` for a combination that cannot work.
    """
    return _plan(engine_cfg).id


def model_files(engine_cfg: EngineConfig) -> dict[str, Path]:
    """The model files the engine of ``engine_cfg`` loads, by role (to fingerprint them)."""
    plan = _plan(engine_cfg)
    files = {"yunet": plan.yunet, "sface": plan.sface}
    if not plan.sface:
        files["dlib-shape"], files["dlib-resnet"] = dlib_model_files()
    return {k: v for k, v in files.items() if v is not None}


def dlib_model_files() -> tuple[Path, Path]:
    """The 5-point predictor and the ResNet of face-recognition-models (EngineError if absent)."""
    # Located without importing the package: its __init__ imports pkg_resources, ~0.15 s
    # of every start for two file names.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise EngineError(
            "the dlib embedder needs the face_recognition_models package: "
            "pip install face-recognition-models"
        )
    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    predictor = models / "shape_predictor_5_face_landmarks.dat"
    recognition = models / "dlib_face_recognition_resnet_model_v1.dat"
    for p in (predictor, recognition):
        if not p.is_file():
            raise EngineError(f"dlib model file {p} is missing; reinstall face-recognition-models")
    return predictor, recognition


def open_engine(engine_cfg: EngineConfig) -> Engine:
    """Load the detector and embedder the configuration asks for (resolving ``auto``).

    Raises :class:`EngineError` naming the missing file and the ways to get it.
    """
    plan = _plan(engine_cfg)
    try:
        detector: Detector = YuNetDetector(plan.yunet) if plan.yunet else DlibHogDetector()
        if plan.sface:
            embedder: Embedder = SFaceEmbedder(plan.sface)
        else:
            embedder = DlibEmbedder(*dlib_model_files())
    except (cv2.error, RuntimeError) as e:
        raise EngineError(f"cannot load the {plan.id} models: {e}") from e
    log.info(
        "engine_chosen",
        engine=plan.id,
        reason=plan.reason,
        detector=engine_cfg.detector,
        embedder=engine_cfg.embedder,
        models_dir=str(engine_cfg.models_dir),
        runtimes=f"{getattr(detector, 'backend', 'dlib')}+{getattr(embedder, 'backend', 'opencv')}",
    )
    return Engine(plan.id, embedder.dim, detector, embedder)


# --- indexing one photo -------------------------------------------------------------------


def _detection_image(image: np.ndarray, max_side: int) -> np.ndarray:
    longer = max(image.shape[:2])
    if longer <= max_side:
        return image
    f = max_side / longer
    size = (max(1, round(image.shape[1] * f)), max(1, round(image.shape[0] * f)))
    if f <= 0.5:
        # A full-size decode (HEIC, PNG): averaging by a whole factor first takes
        # OpenCV's fast path (32 vs 42 ms on 12 MP), bilinear does the rest, under 2x.
        k = int(1 / f)
        whole = (max(1, image.shape[1] // k), max(1, image.shape[0] // k))
        image = cv2.resize(image, whole, interpolation=cv2.INTER_AREA)
    # The DCT reduction leaves less than 2x to go (bar 1/8 on huge photos), where bilinear
    # still touches every source pixel and is ~30x cheaper than INTER_AREA.
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)


def detect_faces(
    photo: PhotoBytes, detector: Detector, detection: DetectionConfig
) -> tuple[np.ndarray, int, list[Detection]]:
    """Decode ``photo`` for detection and find its faces in full-resolution coordinates.

    Returns the decoded image, the DCT reduction it was decoded at (1 for non-JPEG) and
    the faces that pass ``detection``'s score and size filters.
    """
    width, height = photo.info.upright_size
    reduction = 1
    if photo.info.format == "jpeg":
        reduction = jpeg_reduction(width, height, detection.max_side)
    image = decode(photo, reduction)
    small = _detection_image(image, detection.max_side)
    fx, fy = width / small.shape[1], height / small.shape[0]
    found: list[Detection] = []
    for d in detector.detect(small, detection.min_score):
        full = d.scaled(fx, fy).clipped(width, height)
        if min(full.box[2], full.box[3]) < detection.min_face_px:
            continue
        found.append(full)
    return image, reduction, found


def index_photo(path: Path, engine: Engine, detection: DetectionConfig) -> IndexedPhoto:
    """Detect and embed the faces of one photo; coordinates are full-resolution and upright.

    JPEGs are decoded reduced in the DCT (the largest of 1/2, 1/4, 1/8 that keeps the
    longer side >= ``detection.max_side``) and detection runs at <= ``max_side``. Faces
    are embedded from that decode unless the smallest would be upscaled more than
    :data:`UPSCALE_LIMIT` times into the embedder's chip; then the photo is decoded once
    more, only as sharp as that face needs. Each face's crop for the album and web
    pictures is cut from that same decode. Raises :class:`PhotoError`.
    """
    photo = read_photo(Path(path), detection.max_pixels, detection.max_file_bytes)
    width, height = photo.info.upright_size
    image, reduction, found = detect_faces(photo, engine.detector, detection)
    decoded_at = reduction

    vectors = np.zeros((0, engine.dim), np.float32)
    crops: tuple[bytes, ...] = ()
    if found:
        smallest = min(min(d.box[2], d.box[3]) for d in found)
        while reduction > 1 and smallest / reduction * UPSCALE_LIMIT < engine.embedder.face_px:
            reduction //= 2
        if reduction != decoded_at:
            image = decode(photo, reduction)
        sx, sy = image.shape[1] / width, image.shape[0] / height
        in_image = [d.scaled(sx, sy) for d in found]
        vectors = engine.embedder.embed(image, in_image)
        crops = face_crops(image, [d.box for d in in_image])

    faces = tuple(
        Face(
            box=tuple(round(v, 2) for v in d.box),
            landmarks=tuple((round(x, 2), round(y, 2)) for x, y in d.landmarks),
            score=round(d.score, 4),
            embedding=vectors[i],
            crop=crops[i],
        )
        for i, d in enumerate(found)
    )
    log.debug(
        "photo_indexed", path=str(path), faces=len(faces), reduction=reduction, engine=engine.id
    )
    return IndexedPhoto(Path(path), width, height, engine.id, faces)
