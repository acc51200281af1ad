"""Indexing throughput end to end on camera-sized photos, against face_recognition's way.

Usage (the quiet-machine run; see bench/THROUGHPUT.md for the exact commands)::

    .venv/bin/python bench/index_throughput.py [--corpus people,today] [--formats jpeg,heic]
        [--photos 40] [--repeat 3] [--workers 1,2] [--max-side 960] [--no-baseline]
        [--allow-load] [--quick] [--stages-only] [--fr-site DIR] [--recall] [--profile]
        [--sface] [--compare-scan OLD_CHECKOUT] [--old-checkout OLD_CHECKOUT]
        [--fr-photos N] [--formats-of people] [--timeline]

It waits for, then refuses, a 1-minute load average above 0.5 (wall-clock ratios of a
shared machine are worthless); ``--allow-load`` runs anyway and says so loudly. Every
measurement runs ``--repeat`` times interleaved (ours, face_recognition, ours, ...) and
the tables give medians [min-max]. Start-up (a one-photo ``facecluster scan`` as a
subprocess, whole command) is reported apart from steady-state photos/s, and per-stage
CPU time (``time.thread_time``, far less sensitive to other load than wall time).

1. Corpora (``bench/throughput/corpora.py``, made once into /tmp): ``people``, where a
   dozen LFW-dev people recur with faces of 40-1,000 px so the whole command clusters
   them and writes albums; ``today``, the issue-15 corpus where nobody recurs. Each as
   JPEG and, with ``--formats``, as HEIC (pillow-heif's encoder) and RAW (DNG previews).
2. Ours (``runs.py``): steady state per worker count, the whole ``scan`` command, stages.
3. face_recognition (``baseline.py``) on the same JPEGs, same run: the ratio.
4. ``--sface``: the SFace path with a stand-in network (plumbing only, not the model).
5. ``--recall`` (``recall.py``): YuNet recall on the hand-boxed VOC photos vs max_side.
6. ``--compare-scan DIR``: only the whole command, this checkout against another one.
7. ``--timeline`` (``timeline.py``): one whole scan per corpus, marked from process start
   to exit (imports, pool ready, first and last photo, clustering, albums, workers' exit).
``--quick``: 8 photos, one repetition, to smoke-test the bench in a minute or two.

Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import os
import pstats
import shutil
import tempfile
import time
from pathlib import Path

import cv2

from bench.throughput.baseline import run_face_recognition
from bench.throughput.common import REPO, SHARED, median, models_dir, spread
from bench.throughput.corpora import (
    CorpusPhoto,
    build_corpus,
    build_people_corpus,
    format_corpus,
    one_photo_folder,
)
from bench.throughput.recall import recall_table
from bench.throughput.report import (
    MAX_LOAD,
    QUICK_PHOTOS,
    Measured,
    check_load,
    print_report,
    print_stages,
)
from bench.throughput.runs import (
    ScanTime,
    run_ours,
    run_sface_plumbing,
    scan_command,
    scan_config,
    stage_profile,
)
from bench.throughput.timeline import scan_timeline
from daemon.config import Config, DetectionConfig, EngineConfig
from daemon.indexer import IndexPool
from daemon.indexer.engine import open_engine
from daemon.log import configure

CORPORA = {"today": build_corpus, "people": build_people_corpus}


def _corpora(args: argparse.Namespace) -> dict[str, list[CorpusPhoto]]:
    out = {}
    for name in args.corpus.split(","):
        t = time.perf_counter()
        corpus = CORPORA[name](args.photos, args.seed)
        sizes = [p.path.stat().st_size for p in corpus]
        digest = hashlib.sha256("".join(p.path.name for p in corpus).encode()).hexdigest()[:8]
        people = {n for p in corpus for n in p.people}
        print(f"corpus {name}: {len(corpus)} JPEGs 4000x3000 q90 "
              f"({sum(sizes) / len(sizes) / 1e6:.1f} MB avg), "
              f"{sum(p.orientation != 1 for p in corpus)} portrait via EXIF, "
              f"{sum(len(p.truth) for p in corpus)} pasted faces"
              f"{f' of {len(people)} recurring people' if people else ''}; ready in "
              f"{time.perf_counter() - t:.0f} s [{corpus[0].path.parent}, {digest}]", flush=True)
        out[name] = corpus
    return out


def _sets(args: argparse.Namespace, corpora: dict[str, list[CorpusPhoto]]
          ) -> list[tuple[Measured, list[CorpusPhoto]]]:
    """(results, photos) per corpus and format, the formats made once (HEIC: slow)."""
    sets = []
    for name, corpus in corpora.items():
        for kind in args.formats.split(","):
            if kind != "jpeg" and args.formats_of and name not in args.formats_of.split(","):
                continue
            t = time.perf_counter()
            photos = format_corpus(corpus, kind)
            if kind != "jpeg":
                mb = sum(p.path.stat().st_size for p in photos) / len(photos) / 1e6
                print(f"  {name} as {kind}: {len(photos)} files, {mb:.1f} MB avg, ready in "
                      f"{time.perf_counter() - t:.0f} s", flush=True)
            sets.append((Measured(name, kind, len(photos)), photos))
    return sets


def honest(args: argparse.Namespace, corpora: dict[str, list[CorpusPhoto]],
           detection: DetectionConfig, load_note: str) -> None:
    """Repeat every measurement interleaved and print medians; see the module docstring."""
    worker_counts = [int(x) for x in args.workers.split(",")]
    sets = _sets(args, corpora)
    probe = one_photo_folder(next(iter(corpora.values())))
    starts: list[ScanTime] = []
    loads: list[float] = []
    cv2.setNumThreads(1)
    stage_engine = open_engine(EngineConfig(models_dir=models_dir()))
    backend = (f"detector {getattr(stage_engine.detector, 'backend', '-')}, "
               f"embedder {getattr(stage_engine.embedder, 'backend', '-')}")
    for rep in range(args.repeat):
        print(f"repetition {rep + 1}/{args.repeat} (load {os.getloadavg()[0]:.2f})", flush=True)
        starts.append(scan_command(probe))
        for m, photos in sets:
            for w in worker_counts:
                m.ours.setdefault(w, []).append(run_ours(photos, w, detection, m.label))
            if m.kind == "jpeg" and not args.no_baseline:
                fr = run_face_recognition(photos[: args.fr_photos or None], args.fr_site)
                if fr is not None:
                    m.fr.append(fr)
            m.scans.append(scan_command(photos[0].path.parent))
            if args.old_checkout:
                m.old_scans.append(scan_command(photos[0].path.parent, args.old_checkout))
            if not args.no_stages:
                m.stages.append(stage_profile(photos, stage_engine, detection))
        loads.append(os.getloadavg()[0])
        if rep + 1 < args.repeat:  # what is there so far, in case the run is cut short
            print_report([m for m, _ in sets], starts, loads, load_note, backend, rep + 1)
    print_report([m for m, _ in sets], starts, loads, load_note, backend, args.repeat)


def compare_scan(args: argparse.Namespace, corpora: dict[str, list[CorpusPhoto]]) -> None:
    """The whole ``scan`` command, this checkout against ``args.compare_scan``, interleaved."""
    runs: dict[tuple[str, str], list[ScanTime]] = {}
    folders = [(name, c[0].path.parent, len(c)) for name, c in corpora.items()]
    first = next(iter(corpora.values()))
    folders.append(("one photo", one_photo_folder(first), 1))
    code = (("other checkout", args.compare_scan), ("this checkout", REPO))
    for rep in range(args.repeat):
        print(f"repetition {rep + 1}/{args.repeat} (load {os.getloadavg()[0]:.2f})", flush=True)
        for label, folder, _ in folders:
            for name, repo in code:
                runs.setdefault((name, label), []).append(scan_command(folder, repo))
    print(f"\nwhole `scan` command, medians of {args.repeat} [min-max]; other checkout = "
          f"{args.compare_scan}")
    sizes = {label: n for label, _, n in folders}
    for (name, label), got in runs.items():
        walls, cpus = [s.wall for s in got], [s.cpu for s in got]
        print(f"  {name:15s} {label:10s} wall {median(walls):.2f} s{spread(walls)}, "
              f"CPU {median(cpus):.2f} s, {sizes[label] / median(walls):.2f} photos/s, "
              f"{got[0].albums} albums, {got[0].pictures} pictures")


def timelines(args: argparse.Namespace, corpora: dict[str, list[CorpusPhoto]]) -> None:
    """One whole ``scan`` per corpus with its marks (imports, pool ready, photos, clustering,
    albums, exit); with ``--compare-scan``, the other checkout's beside it."""
    code = [("this checkout", REPO)]
    if args.compare_scan:
        code.insert(0, ("other checkout", args.compare_scan))
    for name, photos in corpora.items():
        for label, repo in code:
            work = Path(tempfile.mkdtemp(prefix="fc-bench-timeline-"))
            try:
                marks = scan_timeline(scan_config(photos[0].path.parent, work), repo, work)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            print(f"\n{name}, {label} ({repo}), load {os.getloadavg()[0]:.2f}:\n{marks}")


def stages_only(args: argparse.Namespace, corpora: dict[str, list[CorpusPhoto]],
                detection: DetectionConfig) -> None:
    """Only the per-stage CPU profile, ``--repeat`` times (usable on a busy machine)."""
    cv2.setNumThreads(1)
    engine = open_engine(EngineConfig(models_dir=models_dir()))
    print(f"backends: detector {getattr(engine.detector, 'backend', '-')}, "
          f"embedder {getattr(engine.embedder, 'backend', '-')}")
    for m, photos in _sets(args, corpora):
        print_stages([stage_profile(photos, engine, detection) for _ in range(args.repeat)],
                     m.label)


def profile(corpora: dict[str, list[CorpusPhoto]], detection: DetectionConfig) -> None:
    """cProfile one in-process pass over the first corpus; the top functions by own time."""
    cv2.setNumThreads(1)
    cfg = Config(workers=1, engine=EngineConfig(models_dir=models_dir()), detection=detection)
    corpus = next(iter(corpora.values()))
    with IndexPool(cfg) as pool:
        prof = cProfile.Profile()
        prof.enable()
        for _ in pool.imap([p.path for p in corpus]):
            pass
        prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(14)


def _arguments() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default="people,today",
                    help="comma-separated: people (recurring people), today (issue 15's)")
    ap.add_argument("--photos", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    ap.add_argument("--max-side", type=int, default=DetectionConfig.max_side)
    ap.add_argument("--no-baseline", action="store_true", help="skip face_recognition")
    ap.add_argument("--no-stages", action="store_true", help="skip the per-stage profile")
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
    ap.add_argument("--formats-of", default="",
                    help="comma-separated corpora that get the other formats (default: all)")
    ap.add_argument("--fr-photos", type=int, default=0,
                    help="face_recognition on the first N photos of each corpus only (its "
                    "per-photo rate; ~5 s a photo, so a loaded machine can afford the run)")
    ap.add_argument("--old-checkout", type=Path, metavar="CHECKOUT",
                    help="also time the whole `scan` command with another checkout's code in "
                    "every repetition (today's code beside the new, same run)")
    ap.add_argument("--profile", action="store_true",
                    help="cProfile one in-process pass over the corpus and print the top")
    ap.add_argument("--compare-scan", type=Path, metavar="CHECKOUT",
                    help="only the whole `scan` command (each corpus and one photo), this "
                    "code against another checkout (e.g. `git worktree add /tmp/old "
                    "<commit>`), interleaved --repeat times")
    ap.add_argument("--timeline", action="store_true",
                    help="one whole `scan` per corpus, marked: where its wall time goes "
                    "from process start to exit (with --compare-scan: both checkouts)")
    return ap.parse_args()


def main() -> None:
    args = _arguments()
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
    load_note = "" if args.stages_only or args.profile else check_load(args.allow_load)
    corpora = _corpora(args)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; "
          f"detection.max_side={detection.max_side}")
    if args.profile:
        profile(corpora, detection)
    elif args.stages_only:
        stages_only(args, corpora, detection)
    elif args.timeline:
        timelines(args, corpora)
    elif args.compare_scan:
        compare_scan(args, corpora)
    else:
        if args.repeat < 3 and not args.quick:
            print(f"note: --repeat {args.repeat} < 3: not the medians-of-3 figure")
        honest(args, corpora, detection, load_note)
        if args.sface:
            print("\n" + run_sface_plumbing(next(iter(corpora.values())), detection).row(None))
    if not (args.profile or args.stages_only):
        print(f"\n{load_note}\nload average at end {os.getloadavg()[0]:.2f}")
