"""Time indexing a 12 MP JPEG with YuNet + dlib, and where the time goes.

Usage: ``.venv/bin/python bench/bench_indexer.py [SOURCE_PHOTO] [--repeat N]``

The 4000x3000 test photo is made by upscaling a real photo from the shared test data
(``$FACECLUSTER_TESTDATA``, default ``../shared``) and cached under /tmp. Prints numbers;
asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import cv2

from daemon.config import DetectionConfig, EngineConfig
from daemon.indexer import index_photo, open_engine
from daemon.indexer.engine import _detection_image
from daemon.indexer.image import decode, jpeg_reduction, read_photo

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACECLUSTER_TESTDATA", REPO.parent / "shared"))
CACHE = Path(tempfile.gettempdir()) / "facecluster-bench"


def make_12mp(source: Path) -> Path:
    """Upscale ``source`` to 4000x3000 (cropping to 4:3) once; return the cached file."""
    out = CACHE / f"{source.stem}-4000x3000.jpg"
    if out.exists():
        return out
    CACHE.mkdir(parents=True, exist_ok=True)
    img = cv2.imread(str(source))
    h, w = img.shape[:2]
    if w / h > 4 / 3:
        cw = int(h * 4 / 3)
        img = img[:, (w - cw) // 2 : (w - cw) // 2 + cw]
    else:
        ch = int(w * 3 / 4)
        img = img[(h - ch) // 2 : (h - ch) // 2 + ch]
    big = cv2.resize(img, (4000, 3000), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(out), big, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return out


def dims(image) -> str:
    return f"{image.shape[1]}x{image.shape[0]}"


def timed(fn, repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("source", nargs="?", default=SHARED / "photos/groups/obama_and_biden.jpg")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument(
        "--baseline", action="store_true", help="also time face_recognition's way (slow: ~1 min)"
    )
    args = ap.parse_args()
    cv2.setNumThreads(1)
    photo_path = make_12mp(Path(args.source))
    models = Path(tempfile.mkdtemp())
    shutil.copy(SHARED / "models/face_detection_yunet_2023mar.onnx", models)
    engine = open_engine(EngineConfig(models_dir=models))
    det = DetectionConfig()
    n = args.repeat

    t_total, indexed = timed(lambda: index_photo(photo_path, engine, det), n)
    photo = read_photo(photo_path, det.max_pixels)
    red = jpeg_reduction(*photo.info.upright_size, det.max_side)
    t_read, _ = timed(lambda: read_photo(photo_path, det.max_pixels), n)
    t_full, full = timed(lambda: decode(photo, 1), n)
    t_red, image = timed(lambda: decode(photo, red), n)
    t_resize, small = timed(lambda: _detection_image(image, det.max_side), n)
    t_det, dets = timed(lambda: engine.detector.detect(small, det.min_score), n)
    sx = image.shape[1] / small.shape[1]
    scaled = [d.scaled(sx, sx) for d in dets]
    t_emb, _ = timed(lambda: engine.embedder.embed(image, scaled), n)

    print(f"photo {photo_path.name}: {indexed.width}x{indexed.height}, {len(indexed.faces)} faces,"
          f" engine {engine.id}, best of {n}, 1 thread")
    print(f"  index_photo total        {t_total * 1000:7.1f} ms  ({1 / t_total:.1f} photos/s)")
    print(f"  read bytes + header      {t_read * 1000:7.1f} ms")
    print(f"  decode 1/{red} in the DCT    {t_red * 1000:7.1f} ms  -> {dims(image)}")
    print(f"  (full decode would be    {t_full * 1000:7.1f} ms  -> {dims(full)})")
    print(f"  resize to max_side       {t_resize * 1000:7.1f} ms  -> {dims(small)}")
    print(f"  YuNet detect             {t_det * 1000:7.1f} ms  ({len(dets)} raw detections)")
    print(f"  dlib align + embed       {t_emb * 1000:7.1f} ms  ({len(scaled)} faces,"
          f" {t_emb * 1000 / max(1, len(scaled)):.1f} ms/face)")
    if args.baseline:
        t_base, found = baseline(photo_path)
        print(f"  face_recognition's way   {t_base * 1000:7.1f} ms  ({found} faces):"
              f" {t_base / t_total:.1f}x slower than index_photo")


def baseline(path: Path) -> tuple[float, int]:
    """What face_recognition does by default: full decode, HOG upsampled once, 68-point
    alignment, one descriptor per face (dlib calls only, as face_recognition is not
    installed; its own overhead is negligible)."""
    import dlib
    import face_recognition_models as frm

    hog = dlib.get_frontal_face_detector()
    sp68 = dlib.shape_predictor(frm.pose_predictor_model_location())
    net = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
    t = time.perf_counter()
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    rects = hog(rgb, 1)
    for r in rects:
        net.compute_face_descriptor(rgb, sp68(rgb, r), 1)
    return time.perf_counter() - t, len(rects)



if __name__ == "__main__":
    main()
