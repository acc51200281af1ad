"""What an answer costs: ``facecluster review answer`` and the ``scan`` that applies 25.

Issue 19's bars: ``scan`` applying 25 answers to ~6,000 faces (nothing new to index)
under 20 s on 2 cores, ``facecluster review answer`` under 1 s. The library is
synthetic, so no photo data is needed: ``--faces`` faces of ``--people`` people (each
person's faces around two nearby poses, so the clustering leaves "same person?" questions
open), one to three faces a photo, stored as the indexer would store them; a tenth of
the people have a ``born`` date in labels.toml and every photo a date in
``state/photo-dates.json`` (some before a birth), so the birth-date rule works on every
clustering. The photo files are stand-ins (nothing is indexed: they are unchanged).

Each round, from a fresh copy of the clustered store: ``review --json --limit 25``, an
oracle (the synthetic truth) answers each question with ``review answer`` (a command of
its own each, as a user runs it), then ``scan``. The baseline, interleaved round by
round, is the same ``scan`` with nothing to apply. Every command runs as its own
process; wall and CPU seconds (user + system of the child) are shown, medians of
``--rounds``.

A third figure is what the birth-date rule costs a batch of ``--batch`` new faces (the
running service's path): the store read for the batch's photos and the kept dates, per
call, against the whole photos table and the whole dates file read per call (what it
cost before), interleaved, medians of ``--rounds`` x 20 calls.

    .venv/bin/python bench/review_latency.py [--faces 6000] [--people 300] [--rounds 3]

Research data stays under ``.bench-cache/review-latency/`` (gitignored).

Measured 2026-12-08 on the shared 2-core machine at load 12-14 (wall times are the
load's; CPU times are the command's own), 5,983 faces, 300 people, medians of 3:
``review answer`` 0.72 s wall (max 2.0 s), 0.23 s CPU; ``scan`` applying 25 answers
19.2 s wall, 4.9 s CPU, against 11.1 s wall, 4.7 s CPU with nothing to apply (x1.04 by
CPU); the birth-date rule on 10 new faces 0.26 ms CPU a call against 38.4 ms reading the
whole photos table and dates file (x147).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from daemon import log  # noqa: E402
from daemon.config import load_config  # noqa: E402
from daemon.indexer.types import Face, IndexedPhoto  # noqa: E402
from daemon.review import dates  # noqa: E402
from daemon.stages.pipeline import Pipeline  # noqa: E402

CACHE = REPO / ".bench-cache" / "review-latency"
DIM = 128
ANSWERS = 25


def _config(run: Path) -> Path:
    cfg = run / "config.toml"
    cfg.write_text(
        'watch = ["photos"]\nalbums_dir = "albums"\nstate_dir = "state"\n'
        'labels_file = "labels.toml"\nworkers = 2\n'
        f'[engine]\ndetector = "yunet"\nembedder = "dlib"\nmodels_dir = "{REPO / "models"}"\n'
    )
    return cfg


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def build(run: Path, n_faces: int, n_people: int, seed: int = 7) -> dict[int, int]:
    """The clustered library in ``run``; face id -> true person."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(n_people, DIM)))
    poses = _unit(centres[:, None, :] + rng.normal(scale=0.028, size=(n_people, 2, DIM)))
    truth_of = rng.integers(0, n_people, size=n_faces)
    photos: list[list[int]] = []
    k = 0
    while k < n_faces:  # one to three faces a photo, never one person twice in it
        size = min(int(rng.integers(1, 4)), n_faces - k)
        people = list(dict.fromkeys(truth_of[k:k + size].tolist()))
        photos.append(people)
        k += size
    (run / "photos").mkdir(parents=True)
    cfg = load_config(_config(run))
    truth: dict[int, int] = {}
    kept: dict[str, str] = {}
    with Pipeline(cfg, create=True) as p:
        p.index_photos([])  # reserves ids, as a round of indexing does first
        with p.store.batch():
            for n, people in enumerate(photos):
                path = run / "photos" / f"p{n:05d}.jpg"
                path.write_bytes(f"stand-in {n}".encode())
                st = path.stat()
                faces = tuple(
                    Face((10.0 + 200 * i, 10.0, 80.0, 80.0), (), 0.99,
                         _unit(poses[g, rng.integers(0, 2)]
                               + rng.normal(scale=0.012, size=DIM)))
                    for i, g in enumerate(people))
                digest = f"h{n:05d}"
                ids = p.store.save_indexed(path, st.st_size, st.st_mtime_ns, digest,
                                           IndexedPhoto(path, 1000, 100, p.engine_id, faces))
                truth.update(zip(ids, people, strict=True))
                kept[digest] = f"{2000 + n % 20}-06-01"
        (cfg.state_dir / dates.DATES_FILE).write_text(json.dumps(kept))
        p.recluster()
        first = {}
        for f in p.store.faces():
            if f.person_id is not None:
                first.setdefault(truth[f.id], f.person_id)
        born = sorted(first.items())[: max(1, n_people // 10)]
        cfg.labels_file.write_text("[people]\n" + "".join(
            f'person-{pid:04d} = {{ born = "2010-01" }}\n' for _, pid in born))
        p.reload_labels()
        p.recluster()
        p.write_albums()
    return truth


def _timed(cfg: Path, *args: str) -> tuple[float, float, str]:
    """(wall s, CPU s, stdout) of one ``facecluster`` command as its own process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "daemon", "--config", str(cfg), *args],
                         capture_output=True, text=True, check=True, cwd=REPO).stdout
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, out


def oracle(question: dict, truth: dict[int, int]) -> str:
    """yes / no by the most common true person of each side."""
    sides = [Counter(truth[int(f["face"].removeprefix("face-"))] for f in side["faces"])
             .most_common(1)[0][0] for side in (question["a"], question["b"])]
    return "yes" if sides[0] == sides[1] else "no"


def _fresh(base: Path, name: str) -> Path:
    run = CACHE / name
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(base, run, symlinks=True)
    # The store keeps absolute paths: the copy watches the base's photos (only read).
    _config(run).write_text(_config(run).read_text().replace(
        'watch = ["photos"]', f'watch = ["{base / "photos"}"]'))
    return run


def round_with_answers(base: Path, truth: dict[int, int]) -> dict[str, float]:
    cfg = _config_of(_fresh(base, "answers"))
    _, _, out = _timed(cfg, "review", "--json", "--limit", str(ANSWERS))
    questions = json.loads(out)["questions"]
    walls, cpus = [], []
    for q in questions:
        wall, cpu, _ = _timed(cfg, "review", "answer", q["id"], oracle(q, truth))
        walls.append(wall)
        cpus.append(cpu)
    wall, cpu, _ = _timed(cfg, "scan")
    return {"answers": len(questions), "answer_wall": statistics.median(walls),
            "answer_cpu": statistics.median(cpus), "answer_max": max(walls),
            "scan_wall": wall, "scan_cpu": cpu}


def _config_of(run: Path) -> Path:
    return run / "config.toml"


def round_without(base: Path) -> dict[str, float]:
    wall, cpu, _ = _timed(_config_of(_fresh(base, "nothing")), "scan")
    return {"scan_wall": wall, "scan_cpu": cpu}


def batch_cost(base: Path, batch: int, calls: int = 20) -> tuple[float, float]:
    """CPU seconds per call of the birth-date rule on ``batch`` faces: (now, before)."""
    cfg = load_config(_config_of(_fresh(base, "batch")))
    with Pipeline(cfg) as p:
        people = p._people
        faces = p.store.faces(ids=range(1, batch + 1))

        def before() -> None:  # the old reading: every photo, the whole file, per call
            wanted = {f.photo_id for f in faces}
            hashes = {r.id: (r.content_hash, r.path) for r in p.store.iter_photos()
                      if r.id in wanted and r.content_hash}
            dates.photo_dates(cfg.state_dir, hashes.values())

        def now() -> None:
            people._before_birth(faces)

        out = []
        for fn in (now, before):
            t0 = time.process_time()
            for _ in range(calls):
                fn()
            out.append((time.process_time() - t0) / calls)
    return out[0], out[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=int, default=6000)
    ap.add_argument("--people", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=10)
    args = ap.parse_args(argv)
    log.configure("critical")  # the stand-in photos make no thumbnails: expected
    base = CACHE / "base"
    shutil.rmtree(base, ignore_errors=True)
    t0 = time.perf_counter()
    truth = build(base, args.faces, args.people)
    print(f"library: {len(truth)} faces, {args.people} people, built in "
          f"{time.perf_counter() - t0:.0f} s; load {os.getloadavg()[0]:.1f}")
    rows: dict[str, list[float]] = {}
    for r in range(args.rounds):
        for key, value in round_without(base).items():
            rows.setdefault(f"idle_{key}", []).append(value)
        for key, value in round_with_answers(base, truth).items():
            rows.setdefault(key, []).append(value)
        now, old = batch_cost(base, args.batch)
        rows.setdefault("batch_now", []).append(now)
        rows.setdefault("batch_before", []).append(old)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.3g}" for k, v in rows.items())
              + f"; load {os.getloadavg()[0]:.1f}")
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"\nmedians of {args.rounds} rounds, {len(truth)} faces:")
    print(f"  review answer: wall {med['answer_wall']:.2f} s (max seen "
          f"{max(rows['answer_max']):.2f} s), CPU {med['answer_cpu']:.2f} s")
    print(f"  scan applying {med['answers']:.0f} answers: wall {med['scan_wall']:.1f} s, "
          f"CPU {med['scan_cpu']:.1f} s")
    print(f"  scan with nothing to apply: wall {med['idle_scan_wall']:.1f} s, "
          f"CPU {med['idle_scan_cpu']:.1f} s (ratio {med['scan_cpu'] / med['idle_scan_cpu']:.2f}"
          " by CPU)")
    print(f"  birth-date rule on {args.batch} new faces: {1000 * med['batch_now']:.2f} ms CPU "
          f"a call, before {1000 * med['batch_before']:.2f} ms "
          f"(x{med['batch_before'] / max(med['batch_now'], 1e-9):.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
