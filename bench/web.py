"""How fast the web page renders on a big library, and what it costs in memory.

Builds (once, cached in ``--dir``) a synthetic store of ``--people`` people holding
``--faces`` faces (sizes skewed like a family library: a few people with thousands of
faces, a long tail with a handful; 5 faces per photo, 10 % of faces unassigned) and a
labels.toml naming a third of the people. Then, through HTTP (Starlette's TestClient,
the whole middleware stack), it times each page ``--runs`` times and prints p50/p95:

- ``warm``: the store did not change since the last view (lists come from the cache);
- ``after change``: the read caches dropped before every request, as right after the
  service committed something (people counts recomputed; the "may be the same" centres
  are kept up to five minutes and timed on their own).

Pictures are not timed: a face crop costs one decode of its photo the first time and is
then served from the disk cache; the synthetic photos do not exist.

Memory: a child process imports what the service imports, starts the page in a thread
exactly as the service does (uvicorn on a free port), requests every page over real HTTP
and reports its resident memory before the page, after starting it, and after the
requests (VmRSS), plus the peak (VmHWM).

Usage: ``.venv/bin/python bench/web.py [--people 5000] [--faces 500000] [--dir DIR]``
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from store_scale import ENGINE, insert_photos  # noqa: E402  (this script's folder)

from daemon.config import from_dict  # noqa: E402
from daemon.log import configure  # noqa: E402
from daemon.store import Store  # noqa: E402

LOCAL = ("127.0.0.1", 50000)


def person_sizes(n_people: int, n_assigned: int, rng: np.random.Generator) -> np.ndarray:
    """Faces per person, Zipf-like (a^-1.1), each at least 2, summing to ``n_assigned``."""
    weights = 1.0 / np.arange(1, n_people + 1) ** 1.1
    sizes = np.maximum(2, np.floor(weights / weights.sum() * n_assigned)).astype(np.int64)
    sizes[0] += n_assigned - sizes.sum()
    return rng.permutation(sizes)


def build(state_dir: Path, labels_file: Path, n_people: int, n_faces: int) -> None:
    """Fill the store unless it already holds this library."""
    tag = f"{n_people}/{n_faces}"
    with Store.open(state_dir) as store:
        if store.get_meta("bench_web") == tag:
            print(f"reusing {tag} in {state_dir}")
            return
        if store.counts().faces:
            sys.exit(f"{state_dir} holds other data; pick an empty --dir")
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        ids = insert_photos(store, n_faces, rng)
        store.set_meta("engine", ENGINE)
        people = [store.new_person_id() for _ in range(n_people)]
        order = rng.permutation(np.array(ids))
        sizes = person_sizes(n_people, int(len(ids) * 0.9), rng)
        mapping, at = {}, 0
        for pid, size in zip(people, sizes, strict=True):
            mapping.update({int(f): pid for f in order[at:at + size]})
            at += int(size)
        store.set_persons(mapping)
        lines = ["# synthetic labels for bench/web.py", "[people]"]
        lines += [f'person-{pid:04d} = "Person {pid}"' for pid in people[::3]]
        labels_file.write_text("\n".join(lines) + "\n")
        store.set_meta("bench_web", tag)
    print(f"built {n_faces} faces / {n_people} people in {time.perf_counter() - t0:.0f} s")


def config(root: Path):
    return from_dict({"watch": [str(root / "photos")], "state_dir": str(root / "state"),
                      "albums_dir": str(root / "albums"),
                      "labels_file": str(root / "labels.toml")}, root)


def pages(cfg) -> dict[str, str]:
    """The pages to time, by a readable name."""
    with Store.open_readonly(cfg.state_dir) as store:
        people = sorted((p for p in store.people() if p.face_count),
                        key=lambda p: -p.face_count)
    big, small = people[0], people[len(people) // 2]
    return {
        "people, page 1": "/",
        "people, page 50": "/?page=50",
        f"person, {big.face_count} faces, page 1": f"/person/{big.id}",
        f"person, {big.face_count} faces, last page": f"/person/{big.id}?page=9999",
        f"person, {small.face_count} faces": f"/person/{small.id}",
        "status": "/status",
    }


def time_pages(cfg, runs: int) -> None:
    from starlette.testclient import TestClient

    from daemon.web.app import create_app

    app = create_app(cfg)
    client = TestClient(app, base_url="http://127.0.0.1", client=LOCAL)
    library = app.state.web.library
    print(f"{'page':<40} {'warm p50':>9} {'p95':>7}   {'after change p50':>16} {'p95':>7}  (ms)")
    for name, url in pages(cfg).items():
        out = []
        for drop in (False, True):
            times = []
            client.get(url)  # first view fills the caches
            for _ in range(runs):
                if drop:
                    library._cache.clear()
                t0 = time.perf_counter()
                r = client.get(url)
                times.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200, (url, r.status_code)
            times.sort()
            out += [statistics.median(times), times[int(0.95 * (len(times) - 1))]]
        print(f"{name:<40} {out[0]:9.1f} {out[1]:7.1f}   {out[2]:16.1f} {out[3]:7.1f}")
    took = []
    for _ in range(3):
        t0 = time.perf_counter()
        library._look_alikes()
        took.append(time.perf_counter() - t0)
    print(f"\n'may be the same' look-alikes rebuilt (first person view after start, or after a "
          f"store change once they are {library_max_age():.0f} s old): "
          f"median {statistics.median(took):.2f} s")


def library_max_age() -> float:
    from daemon.web.library import CENTRES_MAX_AGE

    return CENTRES_MAX_AGE


def _rss() -> dict[str, int]:
    status = Path("/proc/self/status").read_text()
    return {k: int(line.split()[1]) // 1024 for line in status.splitlines()
            for k in ("VmRSS", "VmHWM") if line.startswith(k + ":")}


def memory_child(root: Path) -> None:
    """In a child: RSS as the service (imports), with the page started, after requests."""
    import urllib.request
    from dataclasses import replace

    import daemon.service.loop  # noqa: F401
    import daemon.stages.pipeline  # noqa: F401 - what `facecluster run` has loaded before the page
    from daemon.web.server import WebThread

    before = _rss()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = config(root)
    cfg = replace(cfg, web=replace(cfg.web, enabled=True, port=port))
    web = WebThread(cfg)
    web.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/static/style.css").read()
            break
        except OSError:
            time.sleep(0.1)
    started = _rss()
    for path in pages(cfg).values():
        for _ in range(3):
            urllib.request.urlopen(url + path).read()
    after = _rss()
    web.stop()
    print(json.dumps({"before": before["VmRSS"], "started": started["VmRSS"],
                      "after": after["VmRSS"], "peak": after["VmHWM"]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--people", type=int, default=5000)
    ap.add_argument("--faces", type=int, default=500_000)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "fc-bench-web")
    ap.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    configure("warning")
    root = args.dir
    if args.memory_child:
        memory_child(root)
        return
    (root / "photos").mkdir(parents=True, exist_ok=True)
    build(root / "state", root / "labels.toml", args.people, args.faces)
    cfg = config(root)
    print(f"\n{args.faces:,} faces, {args.people:,} people; {args.runs} runs per page")
    time_pages(cfg, args.runs)
    out = subprocess.run([sys.executable, __file__, "--dir", str(root), "--memory-child"],
                         check=True, capture_output=True, text=True).stdout
    m = json.loads(out.strip().splitlines()[-1])
    print(f"\nmemory (MiB RSS): service modules loaded {m['before']}, page started "
          f"{m['started']}, after viewing every page {m['after']} (peak {m['peak']})")


if __name__ == "__main__":
    main()
