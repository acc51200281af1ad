"""Indexing throughput end to end on camera-sized photos, against face_recognition's way.

Usage (the quiet-machine run; see bench/THROUGHPUT.md for the exact commands)::

    .venv/bin/python bench/index_throughput.py [--photos 40] [--repeat 3] [--workers 1,2]
        [--max-side 960] [--no-baseline] [--allow-load] [--quick] [--stages-only]
        [--fr-site DIR] [--recall] [--profile] [--formats jpeg,heic,raw]
        [--compare-scan OLD_CHECKOUT]

It refuses to start when the 1-minute load average is above 0.5 (wall-clock ratios of a
shared machine are worthless); ``--allow-load`` runs anyway and says so loudly in the
output. Each side runs ``--repeat`` times interleaved (ours, face_recognition, ours, ...)
and the table gives medians. Start-up (a one-photo ``facecluster scan`` as a subprocess,
whole command) is reported apart from steady-state photos/s, and per-stage CPU time
(``time.thread_time``, far less sensitive to other load than wall time) in ms/photo.
``--quick``: 8 photos, one repetition, to smoke-test the bench in about a minute.

1. Builds (once, cached under /tmp) a corpus of 4000x3000 JPEGs (quality 90, sensor-like
   grain) from the real photos in the shared test data (``tests/shared_data.py``): a
   no-face photo scaled up as background with 0-6 LFW faces pasted in at 90-700 px, a
   quarter of them portrait (stored sideways with an EXIF orientation tag, as phones do),
   plus a few real photos from ``photos/known`` and ``photos/groups`` scaled up whole.
2. Indexes it as the service does (stat, SHA-256, :class:`daemon.indexer.IndexPool`,
   batched writes into a real :class:`daemon.store.Store`) with each worker count, and
   reports photos/s, faces/s, faces found, recall of the pasted faces and peak RSS.
3. Runs face_recognition's own pipeline on the same files in one process
   (``load_image_file`` -> ``face_locations`` (HOG, upsample 1) -> ``face_encodings``) if
   it is installed (``pip install --no-deps face_recognition`` + Pillow), and the ratio.
4. Times the SFace path with a stand-in network (plumbing only, not the real model).
5. ``--recall``: YuNet recall on the hand-boxed Pascal VOC group photos, placed in a
   4000x3000 frame at several sizes, for several ``detection.max_side`` values.
6. ``--formats jpeg,heic,raw``: the same corpus also as 12 MP HEICs (pillow-heif's
   encoder, the turn as ``irot`` as phones write it) and as DNGs whose embedded preview
   is the full-size JPEG (as cameras embed it), indexed in the same run beside the JPEGs.

Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import hashlib
import multiprocessing
import os
import pstats
import random
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's daemon and tests.shared_data

from daemon.config import Config, DetectionConfig, EngineConfig  # noqa: E402
from daemon.indexer import IndexPool, dlibnet, index_photo  # noqa: E402
from daemon.indexer import engine as engine_module  # noqa: E402
from daemon.indexer.detect import YuNetDetector  # noqa: E402
from daemon.indexer.embed import SFaceEmbedder  # noqa: E402
from daemon.indexer.engine import Engine, detect_faces, open_engine  # noqa: E402
from daemon.indexer.image import read_photo  # noqa: E402
from daemon.indexer.onnxpb import Graph  # noqa: E402
from daemon.log import configure  # noqa: E402
from daemon.stages.sync import content_hash  # noqa: E402
from daemon.store import Store  # noqa: E402
from tests.shared_data import testdata_dir  # noqa: E402

SHARED = testdata_dir()
CACHE = Path(tempfile.gettempdir()) / "facecluster-throughput"
YUNET = "face_detection_yunet_2023mar.onnx"
W, H = 4000, 3000
CORPUS_VERSION = 2


@dataclass
class CorpusPhoto:
    path: Path
    truth: list[tuple[float, float, float, float]]
    """Pasted faces (x, y, w, h) in upright full-resolution pixels; empty for whole photos."""
    orientation: int = 1


@dataclass
class Run:
    name: str
    seconds: float
    photos: int
    faces: int
    found_truth: int = 0
    truth: int = 0
    rss_mb: list[float] = field(default_factory=list)
    start_seconds: float = 0.0
    failed: int = 0
    cpu_seconds: float = 0.0
    """CPU time of every process doing the work (user + system), over the same span."""
    centres: dict[Path, list[tuple[float, float]]] = field(default_factory=dict)
    """Centres of the faces found, per photo, in upright full-resolution pixels."""
    boxes: dict[Path, list[tuple[float, float, float, float]]] = field(default_factory=dict)
    """face_recognition's boxes (x, y, w, h), upright: the yardstick for our recall."""

    @property
    def photos_per_s(self) -> float:
        return self.photos / self.seconds

    def row(self, baseline: Run | None) -> str:
        ratio = f"{self.photos_per_s / baseline.photos_per_s:6.1f}x" if baseline else "     -"
        recall = f"{self.found_truth}/{self.truth}" if self.truth else "-"
        rss = ", ".join(f"{r:.0f}" for r in self.rss_mb) or "-"
        return (
            f"{self.name:<34} {self.photos_per_s:7.2f} {self.faces / self.seconds:7.2f} "
            f"{1000 * self.seconds / self.photos:8.0f} {self.faces:6d} {recall:>8} {ratio}  "
            f"{rss}"
        )


# --- corpus ------------------------------------------------------------------------------


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


def build_corpus(n: int, seed: int) -> list[CorpusPhoto]:
    """Make (or reuse from /tmp) ``n`` camera-sized test photos; see the module docstring."""
    out = CACHE / f"corpus-v{CORPUS_VERSION}-n{n}-s{seed}"
    index = out / "truth.txt"
    if index.exists():
        return _read_index(out, index)
    tmp = out.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rnd, rng = random.Random(seed), np.random.default_rng(seed)
    backgrounds = sorted((SHARED / "photos/no-faces").glob("*.jpg"))
    wholes = sorted((SHARED / "photos/known").glob("*/*.jpg")) + sorted(
        (SHARED / "photos/groups").glob("*.jpg")
    )
    lfw = sorted((SHARED / "faces/lfw-dev").glob("*/*.jpg"))
    lines = []
    for i in range(n):
        orientation = rnd.choice([1, 1, 1, 6, 1, 1, 8, 1])
        w, h = (W, H) if orientation == 1 else (H, W)
        truth: list[tuple[float, float, float, float]] = []
        if i % 5 == 4:  # a real photo scaled up whole: real faces, no pasted truth
            canvas = _fill(cv2.imread(str(rnd.choice(wholes))), w, h)
        else:
            canvas = _fill(cv2.imread(str(rnd.choice(backgrounds))), w, h)
            taken: list[tuple[int, int, int]] = []
            for _ in range(rnd.randint(0, 6)):
                side = int(250 * rnd.uniform(0.8, 5.0))  # the LFW face is ~0.45 of its image
                for _attempt in range(50):
                    x, y = rnd.randrange(0, w - side), rnd.randrange(0, h - side)
                    if all(abs(x - a) > (side + s) / 2 + 20 or abs(y - b) > (side + s) / 2 + 20
                           for a, b, s in taken):
                        break
                else:
                    continue
                face = cv2.resize(cv2.imread(str(rnd.choice(lfw))), (side, side),
                                  interpolation=cv2.INTER_CUBIC)
                _paste(canvas, face, x, y)
                taken.append((x + side // 2, y + side // 2, side))
                truth.append((x + 0.3 * side, y + 0.28 * side, 0.4 * side, 0.44 * side))
        path = tmp / f"IMG_{i:04d}.jpg"
        _save(canvas, path, orientation, rng)
        boxes = ";".join(",".join(f"{v:.1f}" for v in b) for b in truth)
        lines.append(f"{path.name}\t{orientation}\t{boxes}")
    (tmp / "truth.txt").write_text("\n".join(lines) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return _read_index(out, index)


def _read_index(folder: Path, index: Path) -> list[CorpusPhoto]:
    photos = []
    for line in index.read_text().splitlines():
        name, orientation, boxes = line.split("\t")
        truth = [tuple(float(v) for v in b.split(",")) for b in boxes.split(";") if b]
        photos.append(CorpusPhoto(folder / name, truth, int(orientation)))  # type: ignore[arg-type]
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


# --- our pipeline ------------------------------------------------------------------------


def _models_dir() -> Path:
    d = CACHE / "models"
    d.mkdir(parents=True, exist_ok=True)
    if not (d / YUNET).exists():
        shutil.copy(SHARED / "models" / YUNET, d / YUNET)
    return d


def _clear_peak_rss() -> None:
    with contextlib.suppress(OSError):  # resets VmHWM so each run reports its own peak
        Path("/proc/self/clear_refs").write_text("5")


def _peak_rss_mb(pid: int | str = "self") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of a live process, from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _worker_pids() -> list[int]:
    """Our spawned index workers (direct children running multiprocessing's spawn_main)."""
    pids = []
    for task in Path("/proc/self/task").iterdir():
        for pid in (task / "children").read_text().split():
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"spawn_main" in cmd:
                pids.append(int(pid))
    return pids


def format_corpus(corpus: list[CorpusPhoto], kind: str) -> list[CorpusPhoto]:
    """The corpus as HEICs or as DNGs with a full-size JPEG preview (cached under /tmp)."""
    if kind == "jpeg":
        return corpus
    import sys

    sys.path.insert(0, str(REPO / "tests"))
    import formats  # the test makers: pillow-heif's encoder, the DNG writer

    folder = corpus[0].path.parent.with_name(corpus[0].path.parent.name + f"-{kind}")
    folder.mkdir(exist_ok=True)
    out = []
    for p in corpus:
        dest = folder / p.path.with_suffix(".heic" if kind == "heic" else ".dng").name
        if not dest.exists():
            data = p.path.read_bytes()
            stored = cv2.imdecode(np.frombuffer(data, np.uint8),
                                  cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
            if kind == "heic":  # heic_bytes turns upright pixels into stored + orientation
                from daemon.indexer.image import apply_orientation

                blob = formats.heic_bytes(apply_orientation(stored, p.orientation), p.orientation)
            else:
                blob = formats.dng_bytes(data, stored.shape[1], stored.shape[0], p.orientation)
            tmp = dest.with_suffix(".tmp")
            tmp.write_bytes(blob)
            tmp.rename(dest)
        out.append(replace(p, path=dest))
    return out


def run_ours(corpus: list[CorpusPhoto], workers: int, detection: DetectionConfig,
             kind: str = "") -> Run:
    """Index the corpus as the scan does: stat, hash, pool, one writer with batched commits."""
    state = Path(tempfile.mkdtemp(prefix="fc-bench-state-"))
    cfg = Config(workers=workers, engine=EngineConfig(models_dir=_models_dir()),
                 detection=detection, state_dir=state, log_level="warning")
    by_path = {p.path: p for p in corpus}
    label = f"facecluster{' ' + kind if kind else ''}"
    run = Run(f"{label}, {workers} worker{'s' if workers > 1 else ''}", 0, 0, 0)
    _clear_peak_rss()
    t0 = time.perf_counter()
    with Store.open(state) as store, IndexPool(cfg) as pool:
        pool.wait_loaded()
        t1 = time.perf_counter()
        run.start_seconds = t1 - t0
        pids = _worker_pids() if workers > 1 else []
        cpu0 = time.process_time() + sum(_cpu_of(pid) for pid in pids)
        for start in range(0, len(corpus), 50):
            chunk = [p.path for p in corpus[start : start + 50]]
            known = {p: (p.stat(), content_hash(p)) for p in chunk}
            with store.batch():
                for path, result in pool.imap(chunk):
                    st, digest = known[path]
                    run.photos += 1
                    if not hasattr(result, "faces"):
                        run.failed += 1
                        store.save_failed(path, st.st_size, st.st_mtime_ns, digest,
                                          str(result), False)
                        continue
                    store.save_indexed(path, st.st_size, st.st_mtime_ns, digest, result)
                    run.faces += len(result.faces)
                    truth = by_path[path].truth
                    run.truth += len(truth)
                    centres = [(f.box[0] + f.box[2] / 2, f.box[1] + f.box[3] / 2)
                               for f in result.faces]
                    run.found_truth += matched(truth, centres)
                    run.centres[path] = centres
        run.seconds = time.perf_counter() - t1
        run.cpu_seconds = time.process_time() + sum(_cpu_of(pid) for pid in pids) - cpu0
        if workers > 1:
            run.rss_mb = [_peak_rss_mb(pid) for pid in _worker_pids()]
        else:
            run.rss_mb = [_peak_rss_mb()]
        stored = store.counts()
    shutil.rmtree(state, ignore_errors=True)
    print(f"  ({run.name}: engine start {run.start_seconds:.1f} s; store holds {stored})")
    return run


# --- face_recognition ----------------------------------------------------------------------


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


def _fr_worker(paths: list[str], conn, site: str | None = None) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if site:  # face_recognition installed aside (pip install --target), never in the product
        sys.path.insert(0, site)
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


# --- SFace plumbing with a stand-in network -----------------------------------------------------


def _sface_stand_in() -> Path:
    """A network with SFace's input and output shapes only (pool + linear): NOT SFace."""
    path = CACHE / "sface-stand-in.onnx"
    rng = np.random.default_rng(7)
    g = Graph("sface_stand_in")
    pooled = g.node("Flatten", [g.node("GlobalAveragePool", ["data"])])
    out = g.node("MatMul", [pooled, g.constant(rng.normal(size=(3, 128)).astype(np.float32))])
    path.write_bytes(g.model_bytes({"data": [1, 3, 112, 112]}, {out: [1, 128]}))
    return path


def run_sface_plumbing(corpus: list[CorpusPhoto], detection: DetectionConfig) -> Run:
    engine = Engine("yunet-2023mar+sface-STAND-IN", 128,
                    YuNetDetector(_models_dir() / YUNET), SFaceEmbedder(_sface_stand_in()))
    run = Run("SFace STAND-IN (plumbing), 1 proc", 0, 0, 0)
    t = time.perf_counter()
    for photo in corpus:
        run.faces += len(index_photo(photo.path, engine, detection).faces)
        run.photos += 1
    run.seconds = time.perf_counter() - t
    return run


# --- detector recall vs max_side ---------------------------------------------------------------


def _voc_boxes() -> dict[str, list[tuple[int, int, int, int]]]:
    boxes: dict[str, list[tuple[int, int, int, int]]] = {}
    for xml in ("training.xml", "testing.xml"):
        for image in ET.parse(SHARED / "photos/groups" / xml).getroot().iter("image"):
            boxes[image.get("file")] = [
                (int(b.get("left")), int(b.get("top")), int(b.get("width")), int(b.get("height")))
                for b in image.iter("box")
            ]
    return boxes


def recall_table(max_sides: list[int], detection: DetectionConfig) -> None:
    """YuNet recall on the boxed VOC photos scaled to fill a fraction of a 4000 px frame."""
    detector = YuNetDetector(_models_dir() / YUNET)
    boxes = _voc_boxes()
    folder = CACHE / "voc-frames"
    folder.mkdir(parents=True, exist_ok=True)
    fractions = (1.0, 0.5, 0.33, 0.25)
    faces = sum(map(len, boxes.values()))
    print(f"\nYuNet recall on the hand-boxed Pascal VOC faces ({faces} faces in {len(boxes)} "
          "photos), each photo")
    print("scaled to fill a share of a 4000x3000 JPEG; min_face_px=0, "
          f"min_score={detection.min_score:.2f}")
    print(f"{'photo width share':<18} {'face px (median)':>16} "
          + " ".join(f"{'max_side ' + str(m):>14}" for m in max_sides))
    times: dict[int, list[float]] = {m: [] for m in max_sides}
    for frac in fractions:
        hits = dict.fromkeys(max_sides, 0)
        total, sizes = 0, []
        for name, truth in boxes.items():
            img = cv2.imread(str(SHARED / "photos/groups" / name))
            k = W * frac / img.shape[1]
            path = folder / f"{Path(name).stem}-{frac}.jpg"
            if not path.exists():
                canvas = np.full((H, W, 3), 127, np.uint8)
                big = cv2.resize(img, None, fx=k, fy=k, interpolation=cv2.INTER_CUBIC)
                big = big[:H, :W]
                canvas[: big.shape[0], : big.shape[1]] = big
                cv2.imwrite(str(path), canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])
            scaled = [(x * k, y * k, w * k, h * k) for x, y, w, h in truth]
            scaled = [b for b in scaled if b[1] + b[3] <= H]
            total += len(scaled)
            sizes += [b[2] for b in scaled]
            photo = read_photo(path, detection.max_pixels)
            for m in max_sides:
                det = replace(detection, max_side=m, min_face_px=0)
                t = time.perf_counter()
                _, _, found = detect_faces(photo, detector, det)
                times[m].append(time.perf_counter() - t)
                centres = [(d.box[0] + d.box[2] / 2, d.box[1] + d.box[3] / 2) for d in found]
                hits[m] += matched(scaled, centres)
        print(f"{frac:<18} {float(np.median(sizes)):16.0f} "
              + " ".join(f"{hits[m]}/{total} {hits[m] / total:4.0%}".rjust(14) for m in max_sides))
    print(f"{'decode+detect ms':<35} "
          + " ".join(f"{1000 * float(np.median(times[m])):14.0f}" for m in max_sides))


# --- honest measurement: load check, repetitions, start-up, per-stage CPU -----------------

MAX_LOAD = 0.5
QUICK_PHOTOS = 8


def check_load(allow: bool, wait: float = 180.0) -> str:
    """Refuse a loaded machine (1-minute load average > MAX_LOAD) unless ``allow``.

    Waits up to ``wait`` seconds for the average to settle first: it decays with a
    one-minute time constant, so right after another run (say ``--quick``) it needs a
    minute or two to fall below the limit. Returns a note for the report; loud when the
    run goes ahead under load.
    """
    deadline = time.monotonic() + wait
    load = os.getloadavg()[0]
    if load > MAX_LOAD and not allow:
        print(f"load average {load:.2f} > {MAX_LOAD}: waiting up to {wait:.0f} s for it to "
              "settle", flush=True)
        while load > MAX_LOAD and time.monotonic() < deadline:
            time.sleep(5)
            load = os.getloadavg()[0]
    if load <= MAX_LOAD:
        return f"load average {load:.2f} at start (quiet: <= {MAX_LOAD})"
    if not allow:
        raise SystemExit(
            f"1-minute load average is {load:.2f} (> {MAX_LOAD}): wall-clock figures would "
            "measure the other jobs. Wait for a quiet machine or pass --allow-load (the "
            "output is then marked as not comparable)."
        )
    return (f"!!! LOADED MACHINE: load average {load:.2f} at start (> {MAX_LOAD}), run with "
            "--allow-load: wall-clock rates and ratios are NOT quiet-machine figures; "
            "only the CPU columns mean something !!!")


STAGES = ("read", "hash", "decode", "detect", "landmarks+chip", "embed", "store", "other")


class StageClock:
    """Per-stage CPU time (``time.thread_time``) of the in-process indexing path.

    Wraps the engine's own functions in place, so what is timed is exactly the code the
    scan runs; ``other`` is the rest of the photo's CPU time (Python glue, scaling).
    """

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(STAGES, 0.0)

    def wrap(self, stage: str, fn):  # noqa: ANN001, ANN201 - any callable
        def timed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            t = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[stage] += time.thread_time() - t
        return timed

    @contextlib.contextmanager
    def installed(self, engine: Engine):  # noqa: ANN201
        saved = (engine_module.read_photo, engine_module.decode,
                 engine_module._detection_image, dlibnet.describe)
        engine_module.read_photo = self.wrap("read", engine_module.read_photo)
        engine_module.decode = self.wrap("decode", engine_module.decode)
        engine_module._detection_image = self.wrap("decode", engine_module._detection_image)
        dlibnet.describe = self.wrap("embed", dlibnet.describe)
        detector, embedder = engine.detector, engine.embedder
        detector.detect = self.wrap("detect", detector.detect)  # type: ignore[method-assign]
        if hasattr(embedder, "chips"):
            embedder.chips = self.wrap("landmarks+chip", embedder.chips)  # type: ignore[attr-defined]
        try:
            yield
        finally:
            (engine_module.read_photo, engine_module.decode,
             engine_module._detection_image, dlibnet.describe) = saved
            for obj, name in ((detector, "detect"), (embedder, "chips")):
                obj.__dict__.pop(name, None)


def stage_profile(corpus: list[CorpusPhoto], engine: Engine, detection: DetectionConfig
                  ) -> dict[str, float]:
    """One in-process pass over the corpus: CPU ms/photo per stage, plus ``total``."""
    clock = StageClock()
    state = Path(tempfile.mkdtemp(prefix="fc-bench-stages-"))
    try:
        with Store.open(state) as store, clock.installed(engine), store.batch():
            t0 = time.thread_time()
            for photo in corpus:
                st = photo.path.stat()
                digest = clock.wrap("hash", content_hash)(photo.path)
                result = index_photo(photo.path, engine, detection)
                clock.wrap("store", store.save_indexed)(
                    photo.path, st.st_size, st.st_mtime_ns, digest, result)
            total = time.thread_time() - t0
    finally:
        shutil.rmtree(state, ignore_errors=True)
    clock.seconds["other"] = total - sum(clock.seconds.values())
    n = len(corpus)
    return {**{k: 1000 * v / n for k, v in clock.seconds.items()}, "total": 1000 * total / n}


def _scan_config(folder: Path, work: Path) -> Path:
    """A config.toml for ``facecluster scan`` of ``folder``, writing only under ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    cfg = work / "config.toml"
    cfg.write_text(
        f'watch = ["{folder}"]\nalbums_dir = "{work / "albums"}"\n'
        f'state_dir = "{work / "state"}"\nlabels_file = "{work / "labels.toml"}"\n'
        f'log_level = "warning"\n[engine]\nmodels_dir = "{_models_dir()}"\n'
    )
    return cfg


def scan_command(folder: Path, repo: Path = REPO) -> tuple[float, float]:
    """Wall and CPU seconds (all processes) of a whole ``facecluster scan`` of ``folder``,
    default settings, fresh state: interpreter start, imports, engine, index, cluster,
    albums. ``repo``: the checkout whose code runs (another commit, for a before/after)."""
    work = Path(tempfile.mkdtemp(prefix="fc-bench-scan-"))
    try:
        cfg = _scan_config(folder, work)
        env = {**os.environ, "PYTHONPATH": str(repo)}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "daemon", "--config", str(cfg), "scan"],
                       env=env, check=True, stdout=subprocess.DEVNULL, cwd=work)
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def compare_scan(args: argparse.Namespace, corpus: list[CorpusPhoto]) -> None:
    """The whole ``scan`` command, this checkout against ``args.compare_scan``, interleaved."""
    runs: dict[tuple[str, str], list[tuple[float, float]]] = {}
    folders = (("corpus", corpus[0].path.parent), ("one photo", one_photo_folder(corpus)))
    code = (("other checkout", args.compare_scan), ("this checkout", REPO))
    for _ in range(args.repeat):
        for name, repo in code:
            for label, folder in folders:
                runs.setdefault((name, label), []).append(scan_command(folder, repo))
    print(f"\nwhole `scan` command, medians of {args.repeat} [min-max]; other checkout = "
          f"{args.compare_scan}")
    for (name, label), got in runs.items():
        walls, cpus = [w for w, _ in got], [c for _, c in got]
        n = len(corpus) if label == "corpus" else 1
        print(f"  {name:15s} {label:10s} wall {_median(walls):.2f} s {_spread(walls)}, "
              f"CPU {_median(cpus):.2f} s, {n / _median(walls):.2f} photos/s")


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


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _spread(values: list[float], fmt: str = "{:.2f}") -> str:
    if len(values) < 2:
        return ""
    return f" [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def recall_vs_fr(ours: Run, fr: Run) -> tuple[int, int]:
    """(face_recognition's faces that we also found, face_recognition's faces)."""
    hits = total = 0
    for path, boxes in fr.boxes.items():
        total += len(boxes)
        hits += matched(boxes, ours.centres.get(path, []))
    return hits, total


def honest(args: argparse.Namespace, corpus: list[CorpusPhoto], detection: DetectionConfig,
           load_note: str) -> None:
    """Repeat every measurement interleaved and print medians; see the module docstring."""
    worker_counts = [int(x) for x in args.workers.split(",")]
    probe = one_photo_folder(corpus)
    ours: dict[int, list[Run]] = {w: [] for w in worker_counts}
    fr_runs: list[Run] = []
    scans: list[tuple[float, float]] = []
    starts: list[tuple[float, float]] = []
    stages: list[dict[str, float]] = []
    loads: list[float] = []
    cv2.setNumThreads(1)
    stage_engine = open_engine(EngineConfig(models_dir=_models_dir()))
    backend = (f"detector {getattr(stage_engine.detector, 'backend', '-')}, "
               f"embedder {getattr(stage_engine.embedder, 'backend', '-')}")
    for rep in range(args.repeat):
        print(f"repetition {rep + 1}/{args.repeat} (load {os.getloadavg()[0]:.2f})", flush=True)
        starts.append(scan_command(probe))
        for w in worker_counts:
            ours[w].append(run_ours(corpus, w, detection))
        if not args.no_baseline:
            fr = run_face_recognition(corpus, args.fr_site)
            if fr is not None:
                fr_runs.append(fr)
        scans.append(scan_command(corpus[0].path.parent))
        stages.append(stage_profile(corpus, stage_engine, detection))
        loads.append(os.getloadavg()[0])
    _report(args, corpus, ours, fr_runs, scans, starts, stages, loads, load_note, backend)


def _report(args: argparse.Namespace, corpus: list[CorpusPhoto], ours: dict[int, list[Run]],
            fr_runs: list[Run], scans: list[tuple[float, float]],
            starts: list[tuple[float, float]], stages: list[dict[str, float]],
            loads: list[float], load_note: str, backend: str) -> None:
    n = len(corpus)
    reps = args.repeat
    print(f"\n== medians of {reps} interleaved repetition{'s' if reps > 1 else ''} "
          f"[min-max]; {n} photos; backends: {backend} ==")
    print(load_note)
    print(f"load average after each repetition: {', '.join(f'{x:.2f}' for x in loads)} "
          "(includes this bench's own work, ~1-2 on 2 cores)")
    fr_rate = _median([r.photos_per_s for r in fr_runs]) if fr_runs else float("nan")
    fr_cpu = _median([r.cpu_seconds / r.photos for r in fr_runs]) if fr_runs else float("nan")
    print(f"\n{'pipeline':<40} {'photo/s':>16} {'CPU ms/photo':>13} {'vs f_r':>7} "
          f"{'CPU vs f_r':>10} {'faces':>6} {'truth recall':>12} {'f_r recall':>10}")

    def line(name: str, rates: list[float], cpu_ms: float, faces: str, truth: str, vs: str
             ) -> None:
        rate = _median(rates)
        ratio = rate / fr_rate if fr_runs else float("nan")
        cpu_ratio = 1000 * fr_cpu / cpu_ms if fr_runs else float("nan")
        print(f"{name:<40} {f'{rate:.2f}{_spread(rates)}':>16} {cpu_ms:13.0f} "
              f"{ratio:6.1f}x {cpu_ratio:9.1f}x {faces:>6} {truth:>12} {vs:>10}")

    if fr_runs:
        r = fr_runs[0]
        line(r.name, [x.photos_per_s for x in fr_runs], 1000 * fr_cpu, str(r.faces),
             f"{r.found_truth}/{r.truth}", "-")
    for w, runs in ours.items():
        r = runs[0]
        vs = "-"
        if fr_runs:
            hits, total = recall_vs_fr(r, fr_runs[0])
            vs = f"{hits}/{total}"
        cpu_ms = _median([1000 * x.cpu_seconds / x.photos for x in runs])
        line(f"facecluster, {w} worker{'s' if w > 1 else ''} (steady)",
             [x.photos_per_s for x in runs], cpu_ms, str(r.faces),
             f"{r.found_truth}/{r.truth}", vs)
    line("facecluster scan, whole command", [n / wall for wall, _ in scans],
         _median([1000 * cpu / n for _, cpu in scans]), "", "", "")
    print("steady = from the first photo to the last commit, pool already started; whole "
          "command = `python -m daemon scan` of the corpus with default settings (workers = "
          "every core for a foreground scan), fresh state, incl. start-up, clustering and albums.")
    print("truth recall = pasted LFW faces found (a detection centred in the face); f_r recall "
          "= face_recognition's faces that we also found")

    walls, cpus = [w for w, _ in starts], [c for _, c in starts]
    print(f"\nstart-up: one-photo `facecluster scan` (whole command, subprocess): "
          f"{_median(walls):.2f} s wall{_spread(walls)}, {_median(cpus):.2f} s CPU{_spread(cpus)}")
    pool_starts = {w: _median([x.start_seconds for x in runs]) for w, runs in ours.items()}
    print("pool start (engine load) inside the bench: " + ", ".join(
        f"{w} worker{'s' if w > 1 else ''} {s:.2f} s" for w, s in pool_starts.items()))
    print_stages(stages)


def print_stages(stages: list[dict[str, float]]) -> None:
    """The per-stage CPU table: median ms/photo over the repetitions [min-max]."""
    print(f"\nCPU ms/photo by stage (thread_time, 1 process, medians of {len(stages)}):")
    for key in (*STAGES, "total"):
        values = [s[key] for s in stages]
        print(f"  {key:<15} {_median(values):7.1f}{_spread(values, '{:.1f}')}")


def stages_only(args: argparse.Namespace, corpus: list[CorpusPhoto],
                detection: DetectionConfig) -> None:
    """Only the per-stage CPU profile, ``--repeat`` times (usable on a busy machine)."""
    cv2.setNumThreads(1)
    engine = open_engine(EngineConfig(models_dir=_models_dir()))
    print(f"backends: detector {getattr(engine.detector, 'backend', '-')}, "
          f"embedder {getattr(engine.embedder, 'backend', '-')}")
    print_stages([stage_profile(corpus, engine, detection) for _ in range(args.repeat)])


# --- main --------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    ap.add_argument("--max-side", type=int, default=DetectionConfig.max_side)
    ap.add_argument("--no-baseline", action="store_true", help="skip face_recognition")
    ap.add_argument("--sface", action="store_true",
                    help="also time the SFace plumbing with a stand-in network (one pass)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="interleaved repetitions of every measurement (medians reported)")
    ap.add_argument("--allow-load", action="store_true",
                    help=f"run even if the load average is above {MAX_LOAD} (marked loudly)")
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke test: {QUICK_PHOTOS} photos, one repetition")
    ap.add_argument("--stages-only", action="store_true",
                    help="only the per-stage CPU profile (CPU time: usable under load)")
    ap.add_argument("--fr-site", help="a folder face_recognition was pip-installed into "
                    "with --target (kept out of the product's environment)")
    ap.add_argument("--recall", action="store_true", help="YuNet recall vs max_side table")
    ap.add_argument("--recall-sides", default="640,800,960,1280,1600")
    ap.add_argument("--formats", default="jpeg",
                    help="comma-separated: jpeg, heic (12 MP HEIC), raw (DNG + JPEG preview)")
    ap.add_argument("--profile", action="store_true",
                    help="cProfile one in-process pass over the corpus and print the top")
    ap.add_argument("--compare-scan", type=Path, metavar="CHECKOUT",
                    help="only the whole `scan` command (corpus and one photo), this code "
                    "against another checkout (e.g. `git worktree add /tmp/old <commit>`), "
                    "interleaved --repeat times")
    args = ap.parse_args()
    if not (SHARED / "photos").is_dir():
        raise SystemExit(f"shared test data not found at {SHARED} (set FACECLUSTER_TESTDATA)")
    detection = DetectionConfig(max_side=args.max_side)
    configure("warning")

    if args.recall:
        cv2.setNumThreads(1)
        recall_table([int(m) for m in args.recall_sides.split(",")], detection)
        return

    if args.quick:
        args.photos, args.repeat = QUICK_PHOTOS, 1
    load_note = "" if args.stages_only else check_load(args.allow_load)
    t = time.perf_counter()
    corpus = build_corpus(args.photos, args.seed)
    sizes = [p.path.stat().st_size for p in corpus]
    digest = hashlib.sha256("".join(p.path.name for p in corpus).encode()).hexdigest()[:8]
    print(f"corpus: {len(corpus)} JPEGs 4000x3000 q90 ({sum(sizes) / len(sizes) / 1e6:.1f} MB "
          f"avg), {sum(p.orientation != 1 for p in corpus)} portrait via EXIF, "
          f"{sum(len(p.truth) for p in corpus)} pasted faces; ready in "
          f"{time.perf_counter() - t:.0f} s [{corpus[0].path.parent}, {digest}]")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; "
          f"detection.max_side={detection.max_side}")

    if args.profile:
        cv2.setNumThreads(1)
        cfg = Config(workers=1, engine=EngineConfig(models_dir=_models_dir()),
                     detection=detection)
        with IndexPool(cfg) as pool:
            prof = cProfile.Profile()
            prof.enable()
            for _ in pool.imap([p.path for p in corpus]):
                pass
            prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(14)
        return
    if args.stages_only:
        stages_only(args, corpus, detection)
        return
    if args.compare_scan:
        compare_scan(args, corpus)
        print(f"\n{load_note}\nload average at end {os.getloadavg()[0]:.2f}")
        return
    if args.formats != "jpeg":
        formats_table(args, corpus, detection)
        return
    if args.repeat < 3 and not args.quick:
        print(f"note: --repeat {args.repeat} < 3; medians of fewer than 3 runs are not the "
              "issue-15 figure")
    honest(args, corpus, detection, load_note)
    if args.sface:
        print("\n" + run_sface_plumbing(corpus, detection).row(None))
    print(f"\n{load_note}\nload average at end {os.getloadavg()[0]:.2f}")


def formats_table(args: argparse.Namespace, corpus: list, detection: DetectionConfig) -> None:
    """One pass per format over the same photos (issue 13): JPEG beside HEIC and RAW."""
    runs: list[Run] = []
    kinds = args.formats.split(",")
    for kind in kinds:
        t = time.perf_counter()
        photos = format_corpus(corpus, kind)
        if kind != "jpeg":
            mb = sum(p.path.stat().st_size for p in photos) / len(photos) / 1e6
            print(f"  {kind} corpus: {len(photos)} files, {mb:.1f} MB avg, ready in "
                  f"{time.perf_counter() - t:.0f} s")
        for w in (int(x) for x in args.workers.split(",")):
            runs.append(run_ours(photos, w, detection, kind))
    print(f"\n{'pipeline':<34} {'photo/s':>7} {'faces/s':>7} {'ms/photo':>8} {'faces':>6} "
          f"{'recall':>8} {'vs f_r':>7}  peak RSS MB (per process)")
    for r in runs:
        print(r.row(None))
    print("recall = pasted LFW faces found (a detection centred in the face); faces = all found")

if __name__ == "__main__":
    main()
