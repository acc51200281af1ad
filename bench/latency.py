"""Latency of ``facecluster run``: from a photo's last write to its entry in an album.

Starts the real service as a subprocess on a temporary library seeded with a few photos
each of the most-photographed people of the shared LFW set (so that new photos of them
join a known person at once), waits until it is idle, then measures

* at idle: photos written one at a time, each waited for;
* under a burst: ``--burst`` photos written as fast as possible, all waited for.

Every written photo is a real LFW photo of a seeded person with a few unique bytes
appended after the JPEG end marker, so it has new content (a real index, not a
duplicate found by hash) but decodes to the same image. Prints median, p95 and max.
Goal: median at idle <= 2 s + settle time.

    .venv/bin/python bench/latency.py [--burst 1000] [--idle 10] [--settle 1.0]

Needs the shared test data ($FACECLUSTER_TESTDATA, see tests/shared_data.py).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from daemon.albums import entry_name  # noqa: E402
from tests.shared_data import testdata_dir  # noqa: E402

YUNET = "face_detection_yunet_2023mar.onnx"


def top_people(lfw: Path, n: int) -> list[Path]:
    """The ``n`` people with most photos in the LFW dev split."""
    rows = []
    for line in (lfw.parent / "lfw-dev.tsv").read_text().splitlines()[1:]:
        name, count = line.split("\t")
        rows.append((int(count), name))
    return [lfw / name for _, name in sorted(rows, reverse=True)[:n]]


class Ready:
    """A NOTIFY_SOCKET that records when READY=1 arrives."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.ready = threading.Event()
        self.stop = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while not self.stop.is_set():
            try:
                msg = self.sock.recv(65536).decode()
            except TimeoutError:
                continue
            except OSError:
                return
            if "READY=1" in msg.splitlines():
                self.ready.set()


def album_entries(albums: Path) -> set[str]:
    """Names of every entry in every album folder."""
    names: set[str] = set()
    if not albums.is_dir():
        return names
    with os.scandir(albums) as it:
        for folder in it:
            if folder.name.startswith(".") or not folder.is_dir(follow_symlinks=False):
                continue
            with os.scandir(folder.path) as entries:
                names.update(e.name for e in entries)
    return names


def write_variant(src: Path, dest: Path, tag: int) -> float:
    """Write ``src`` to ``dest`` with unique trailing bytes; return the time of the last write."""
    data = src.read_bytes() + f"facecluster-bench-{tag}".encode()
    with open(dest, "wb") as fh:
        fh.write(data)
    return time.monotonic()


def wait_all(albums: Path, expected: dict[str, float], timeout: float,
             stall: float | None = None) -> dict[str, float]:
    """Poll the albums until every expected entry exists; return name -> latency seconds.

    With ``stall``, give up once nothing new arrived for that long (a photo whose faces
    match nobody never gets an album entry).
    """
    found: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    while len(found) < len(expected) and time.monotonic() < deadline:
        now = time.monotonic()
        if stall is not None and now - last > stall:
            break
        present = album_entries(albums)
        for name, t_written in expected.items():
            if name not in found and name in present:
                found[name] = now - t_written
                last = now
        time.sleep(0.05)
    return found


def summary(label: str, latencies: list[float], wanted: int, goal: float) -> None:
    """Print median/p95/max, and how many arrived within ``goal`` seconds.

    Photos whose faces are not close enough to a known person for the at-once vote
    wait for the next re-clustering (``recluster_quiet_seconds``): the slow tail.
    """
    if not latencies:
        print(f"{label}: nothing arrived (of {wanted})")
        return
    qs = sorted(latencies)
    p95 = qs[min(len(qs) - 1, int(round(0.95 * (len(qs) - 1))))]
    fast = sum(1 for q in qs if q <= goal)
    print(
        f"{label}: {len(qs)}/{wanted} arrived; median {statistics.median(qs):.2f} s, "
        f"p95 {p95:.2f} s, max {qs[-1]:.2f} s; {fast} within {goal:.1f} s"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--burst", type=int, default=1000)
    ap.add_argument("--idle", type=int, default=10)
    ap.add_argument("--settle", type=float, default=1.0)
    ap.add_argument("--people", type=int, default=10)
    ap.add_argument("--seed-per-person", type=int, default=4)
    ap.add_argument("--keep", action="store_true", help="keep the temporary library")
    args = ap.parse_args()

    data = testdata_dir()
    lfw = data / "faces" / "lfw-dev"
    if not lfw.is_dir() or not (data / "models" / YUNET).is_file():
        print(f"shared test data not found at {data} (set FACECLUSTER_TESTDATA)")
        return 2
    rng = random.Random(7)
    work = Path(tempfile.mkdtemp(prefix="facecluster-latency-"))
    photos, albums, models = work / "photos", work / "albums", work / "models"
    for d in (photos / "seed", photos / "idle", photos / "burst", models):
        d.mkdir(parents=True)
    shutil.copy(data / "models" / YUNET, models / YUNET)
    pool: list[Path] = []
    for person in top_people(lfw, args.people):
        images = sorted(person.glob("*.jpg"))
        for img in images[: args.seed_per_person]:
            shutil.copy(img, photos / "seed" / img.name)
        pool += images[args.seed_per_person :]
    cfg = work / "config.toml"
    cfg.write_text(
        f'watch = ["photos"]\nalbums_dir = "albums"\nstate_dir = "state"\n'
        f'[engine]\ndetector = "yunet"\nembedder = "dlib"\nmodels_dir = "models"\n'
        f"[daemon]\nsettle_seconds = {args.settle}\nrescan_interval = 0\n"
    )
    ready = Ready(work / "notify.sock")
    log = open(work / "service.log", "w")  # noqa: SIM115 - open for the child's lifetime
    env = {**os.environ, "NOTIFY_SOCKET": str(work / "notify.sock")}
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "--config", str(cfg), "run"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        if not ready.ready.wait(120):
            print("service did not report READY=1")
            return 1
        seed = {entry_name(p): t0 for p in (photos / "seed").iterdir()}
        # Past the quiet re-clustering (10 s): seed photos of nobody known never arrive.
        got = wait_all(albums, seed, 300, stall=25)
        print(f"start-up: {len(seed)} seed photos, {len(got)} in albums after "
              f"{time.monotonic() - t0:.1f} s")
        time.sleep(3)  # let the post-start re-clustering finish

        lat: list[float] = []
        for i in range(args.idle):
            src = rng.choice(pool)
            dest = photos / "idle" / f"idle-{i:03d}-{src.name}"
            t = write_variant(src, dest, i)
            # Up to the quiet re-clustering (60 s by default) and some, for faces the
            # at-once vote leaves to it.
            lat += wait_all(albums, {entry_name(dest): t}, 100).values()
            time.sleep(0.5)
        goal = 2.0 + args.settle
        summary(f"idle (settle {args.settle} s)", lat, args.idle, goal)

        expected: dict[str, float] = {}
        t_burst = time.monotonic()
        for i in range(args.burst):
            src = rng.choice(pool)
            dest = photos / "burst" / f"IMG_{i:05d}_{src.stem[-4:]}.jpg"
            expected[entry_name(dest)] = write_variant(src, dest, 100000 + i)
        written = time.monotonic() - t_burst
        got = wait_all(albums, expected, 60 + args.burst * 3.0)
        total = time.monotonic() - t_burst
        summary(f"burst of {args.burst} (written in {written:.1f} s)", list(got.values()),
                args.burst, goal)
        print(f"burst: all done after {total:.1f} s = {len(got) / total:.1f} photos/s")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=15)
            print(f"service stopped with exit code {code}")
        except subprocess.TimeoutExpired:
            proc.kill()
            print("service did not stop within 15 s")
        ready.stop.set()
        log.close()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
