"""Our pipeline, timed: in-process as the scan indexes (steady state), as the whole
``facecluster scan`` command in a subprocess, and per stage (CPU time).

- **steady**: what the scan does - ``stat``, SHA-256, :class:`daemon.indexer.IndexPool`,
  one writer saving into a real :class:`daemon.store.Store` in batched transactions -
  timed from the first photo to the last commit, the pool already started.
- **whole command**: ``python -m daemon --config ... scan`` of a folder, default settings,
  fresh state: interpreter start, imports, engine, indexing, clustering, albums written.
- **stages**: the engine's own functions wrapped in place, ``time.thread_time`` per stage.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.throughput.common import CACHE, REPO, YUNET, models_dir
from bench.throughput.corpora import CorpusPhoto, matched
from daemon.config import Config, DetectionConfig, EngineConfig
from daemon.indexer import IndexPool, dlibnet, index_photo
from daemon.indexer import engine as engine_module
from daemon.indexer.detect import YuNetDetector
from daemon.indexer.embed import SFaceEmbedder
from daemon.indexer.engine import Engine
from daemon.indexer.onnxpb import Graph
from daemon.stages.sync import content_hash
from daemon.store import Store


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




def run_ours(corpus: list[CorpusPhoto], workers: int, detection: DetectionConfig,
             kind: str = "") -> Run:
    """Index the corpus as the scan does: stat, hash, pool, one writer with batched commits."""
    state = Path(tempfile.mkdtemp(prefix="fc-bench-state-"))
    cfg = Config(workers=workers, engine=EngineConfig(models_dir=models_dir()),
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


@dataclass(frozen=True)
class ScanTime:
    """One whole ``facecluster scan``: wall and CPU seconds (all processes), and what it
    wrote: album folders and album pictures (thumbnails + montages)."""

    wall: float
    cpu: float
    albums: int = 0
    pictures: int = 0


def scan_config(folder: Path, work: Path) -> Path:
    """A config.toml for ``facecluster scan`` of ``folder``, writing only under ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    cfg = work / "config.toml"
    cfg.write_text(
        f'watch = ["{folder}"]\nalbums_dir = "{work / "albums"}"\n'
        f'state_dir = "{work / "state"}"\nlabels_file = "{work / "labels.toml"}"\n'
        f'log_level = "warning"\n[engine]\nmodels_dir = "{models_dir()}"\n'
    )
    return cfg


def scan_command(folder: Path, repo: Path = REPO) -> ScanTime:
    """A whole ``facecluster scan`` of ``folder``, default settings, fresh state.
    ``repo``: the checkout whose code runs (another commit, for a before/after)."""
    work = Path(tempfile.mkdtemp(prefix="fc-bench-scan-"))
    try:
        cfg = scan_config(folder, work)
        env = {**os.environ, "PYTHONPATH": str(repo)}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "daemon", "--config", str(cfg), "scan"],
                       env=env, check=True, stdout=subprocess.DEVNULL, cwd=work)
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        albums = work / "albums"
        folders = sum(1 for p in albums.iterdir() if p.is_dir() and not p.name.startswith("."))
        pictures = len(list((albums / ".thumbnails").glob("*.jpg")))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return ScanTime(wall, cpu, folders, pictures)


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
                    YuNetDetector(models_dir() / YUNET), SFaceEmbedder(_sface_stand_in()))
    run = Run("SFace STAND-IN (plumbing), 1 proc", 0, 0, 0)
    t = time.perf_counter()
    for photo in corpus:
        run.faces += len(index_photo(photo.path, engine, detection).faces)
        run.photos += 1
    run.seconds = time.perf_counter() - t
    return run

