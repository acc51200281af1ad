"""How fast the store hands 1M face vectors to the clustering step.

Builds (once, cached in ``--dir``) a store holding ``--faces`` synthetic 128-d faces,
inserted through ``Store.save_indexed`` in batches, then measures in fresh processes
(median of ``--runs``):

- ``store``: ``Store.open`` + ``vectors(engine)`` (the memory-mapped cache path);
- ``sqlite``: the baseline, reading every embedding BLOB straight from SQLite;
- ``rebuild``: ``vectors()`` after the cache files were deleted (one run).

Each reports the seconds until the arrays are in hand, the seconds once every value
was also read once (what clustering does next), and the process's peak RSS at both
points (mapped pages count once touched; they are page cache, not private memory). The page
cache is warm: files were just written or read, as on a running service.

Usage: ``.venv/bin/python bench/store_scale.py [--faces 1000000] [--dir /tmp/...]``
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon.indexer.types import Face, IndexedPhoto  # noqa: E402
from daemon.log import configure  # noqa: E402
from daemon.store import Store  # noqa: E402
from daemon.store import vectors as vector_cache  # noqa: E402
from daemon.store.db import DB_NAME  # noqa: E402

ENGINE = "bench-engine+128d"
DIM = 128
FACES_PER_PHOTO = 5
BATCH_PHOTOS = 2000


def insert_photos(store: Store, n_faces: int, rng: np.random.Generator) -> list[int]:
    """Save ``n_faces`` random unit vectors as photos of FACES_PER_PHOTO faces; face ids."""
    ids: list[int] = []
    n_photos = n_faces // FACES_PER_PHOTO
    for start in range(0, n_photos, BATCH_PHOTOS):
        stop = min(start + BATCH_PHOTOS, n_photos)
        vecs = rng.standard_normal((stop - start, FACES_PER_PHOTO, DIM)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=2, keepdims=True)
        with store.batch():
            for i in range(start, stop):
                path = Path(f"/photos/{i // 1000:04d}/img{i:07d}.jpg")
                faces = tuple(
                    Face(box=(10.0 * k, 10.0, 50.0, 60.0),
                         landmarks=((1.0, 2.0),) * 5, score=0.95, embedding=v)
                    for k, v in enumerate(vecs[i - start])
                )
                ids += store.save_indexed(path, 1, i, f"h{i}",
                                          IndexedPhoto(path, 4000, 3000, ENGINE, faces))
    return ids


def build(state_dir: Path, n_faces: int) -> None:
    """Fill a store with ``n_faces`` random unit vectors unless it already holds them."""
    with Store.open(state_dir) as store:
        if store.get_meta("bench_faces") == str(n_faces):
            print(f"reusing {n_faces} faces in {state_dir}")
            return
        if store.counts().faces:
            sys.exit(f"{state_dir} holds other data; pick an empty --dir")
        t0 = time.perf_counter()
        insert_photos(store, n_faces, np.random.default_rng(0))
        store.set_meta("bench_faces", str(n_faces))
    took = time.perf_counter() - t0
    print(f"inserted {n_faces} faces in {took:.1f} s ({n_faces / took:,.0f} faces/s)")


def measure(kind: str, state_dir: Path) -> dict:
    """Run in a child process: time one load, then one full pass over the values."""
    if kind == "rebuild":
        for p in vars(vector_cache.cache_paths(state_dir, ENGINE)).values():
            p.unlink(missing_ok=True)
    t0 = time.perf_counter()
    if kind in ("store", "rebuild"):
        with Store.open(state_dir) as store:
            ids, vecs = store.vectors(ENGINE)
    else:
        con = sqlite3.connect(state_dir / DB_NAME)
        rows = con.execute(
            "SELECT id, embedding FROM faces WHERE engine = ? ORDER BY id", (ENGINE,)
        ).fetchall()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(-1, DIM)
        del rows
        con.close()
    t1 = time.perf_counter()
    rss_after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    checksum = float(vecs.sum(dtype=np.float64))
    t2 = time.perf_counter()
    return {
        "faces": int(ids.size), "load_s": t1 - t0, "load_and_read_s": t2 - t0,
        "rss_after_load_mb": rss_after_load,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "checksum": checksum,
    }


def run_child(kind: str, state_dir: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--dir", str(state_dir), "--measure", kind],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faces", type=int, default=1_000_000)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/facecluster-bench-store"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--measure", choices=("store", "sqlite", "rebuild"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    configure("warning", json=True)
    if args.measure:
        print(json.dumps(measure(args.measure, args.dir)))
        return
    build(args.dir, args.faces)
    plan = [("store", args.runs), ("sqlite", args.runs), ("rebuild", 1), ("store", 1)]
    results: dict[str, list[dict]] = {}
    for kind, runs in plan:
        label = "store (after rebuild)" if kind == "store" and kind in results else kind
        results[label] = [run_child(kind, args.dir) for _ in range(runs)]
    checksums = {r["checksum"] for rs in results.values() for r in rs}
    print(f"\n{'method':24} {'faces':>9} {'load s':>8} {'+read s':>8} {'RSS MB load':>12} "
          f"{'peak RSS MB':>12}")
    for label, rs in results.items():
        def med(key: str, rs: list[dict] = rs) -> float:
            return statistics.median(r[key] for r in rs)
        print(f"{label:24} {rs[0]['faces']:>9} {med('load_s'):>8.2f} "
              f"{med('load_and_read_s'):>8.2f} {med('rss_after_load_mb'):>12.0f} "
              f"{med('peak_rss_mb'):>12.0f}")
    print(f"(median of {args.runs} runs, 1 for rebuild; identical vectors: {len(checksums) == 1})")


if __name__ == "__main__":
    main()
