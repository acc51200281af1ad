"""The baseline: face_recognition's documented pipeline on the same files, same run.

``load_image_file`` -> ``face_locations`` (HOG, upsample 1) -> ``face_encodings``, in one
spawned process, so its imports and threads stay out of ours. face_recognition is never
installed into the product's environment: ``pip install --no-deps --target /tmp/fr-site
face_recognition`` (dlib-bin, numpy and Pillow come from the venv), then ``--fr-site``.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import sys
import time

from bench.throughput.corpora import CorpusPhoto, matched
from bench.throughput.runs import Run


def _upright_centre(box: tuple[int, int, int, int], orientation: int, stored: tuple[int, int]
                    ) -> tuple[float, float]:
    """Centre of face_recognition's (top, right, bottom, left) box in upright coordinates:
    it reads pixels as stored and ignores the EXIF orientation."""
    top, right, bottom, left = box
    x, y = (left + right) / 2, (top + bottom) / 2
    sw, sh = stored
    if orientation == 6:
        return sh - 1 - y, x
    if orientation == 8:
        return y, sw - 1 - x
    return x, y


def _pkg_resources_shim() -> None:
    """face_recognition_models finds its files with ``pkg_resources``, which setuptools
    81+ no longer ships: give it the one function it calls, in this baseline process only."""
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        import importlib.util
        import types
        from pathlib import Path

        def resource_filename(package: str, name: str) -> str:
            spec = importlib.util.find_spec(package)
            assert spec is not None and spec.submodule_search_locations
            return str(Path(next(iter(spec.submodule_search_locations))) / name)

        sys.modules["pkg_resources"] = types.SimpleNamespace(  # type: ignore[assignment]
            resource_filename=resource_filename)


def _fr_worker(paths: list[str], conn, site: str | None = None) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if site:  # face_recognition installed aside (pip install --target), never in the product
        sys.path.insert(0, site)
    _pkg_resources_shim()
    try:
        import face_recognition
    except ImportError as e:
        conn.send(("missing", str(e)))
        return
    results = []
    t, cpu0 = time.perf_counter(), time.process_time()
    for p in paths:
        image = face_recognition.load_image_file(p)
        locations = face_recognition.face_locations(image)
        face_recognition.face_encodings(image, locations)
        results.append((locations, (image.shape[1], image.shape[0])))
    seconds = time.perf_counter() - t
    cpu = time.process_time() - cpu0
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    conn.send(("ok", (seconds, results, maxrss, cpu)))


def run_face_recognition(corpus: list[CorpusPhoto], site: str | None = None) -> Run | None:
    """face_recognition's documented pipeline, one process, on the same files."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_fr_worker, args=([str(p.path) for p in corpus], child, site))
    proc.start()
    while not parent.poll(1.0):
        if not proc.is_alive():  # face_recognition quit() on a missing model package
            parent.close()
            print("  face_recognition's process ended without a result; skipping the baseline")
            return None
    kind, value = parent.recv()
    proc.join()
    if kind == "missing":
        print(f"  face_recognition is not installed ({value}); skipping the baseline. "
              "Install it with: .venv/bin/pip install --no-deps face_recognition pillow")
        return None
    seconds, results, maxrss_kb, cpu = value
    run = Run("face_recognition (HOG, 1 process)", seconds, len(corpus), 0,
              rss_mb=[maxrss_kb / 1024], cpu_seconds=cpu)
    for photo, (locations, stored) in zip(corpus, results, strict=True):
        run.faces += len(locations)
        run.truth += len(photo.truth)
        centres = [_upright_centre(b, photo.orientation, stored) for b in locations]
        run.found_truth += matched(photo.truth, centres)
        run.centres[photo.path] = centres
        run.boxes[photo.path] = [_upright_box(b, photo.orientation, stored) for b in locations]
    return run


def _upright_box(box: tuple[int, int, int, int], orientation: int, stored: tuple[int, int]
                 ) -> tuple[float, float, float, float]:
    """face_recognition's (top, right, bottom, left) as an upright (x, y, w, h) box."""
    top, right, bottom, left = box
    x0, y0 = _upright_centre((top, left, top, left), orientation, stored)
    x1, y1 = _upright_centre((bottom, right, bottom, right), orientation, stored)
    return min(x0, x1), min(y0, y1), abs(x1 - x0), abs(y1 - y0)



def recall_vs_fr(ours: Run, fr: Run) -> tuple[int, int]:
    """(face_recognition's faces that we also found, face_recognition's faces).

    Photos are paired by name without suffix: face_recognition reads the JPEGs, ours may
    have read their HEIC or RAW copies."""
    centres = {path.stem: found for path, found in ours.centres.items()}
    hits = total = 0
    for path, boxes in fr.boxes.items():
        total += len(boxes)
        hits += matched(boxes, centres.get(path.stem, []))
    return hits, total


