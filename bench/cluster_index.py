"""Indexing through Dask against the local pool: the overhead, and a second machine's share.

Usage::

    FACECLUSTER_FIW=/path/to/train-faces-det .venv/bin/python bench/cluster_index.py \
        [--photos 120] [--repeat 3] [--quick]

Needs the ``cluster`` extra and ``taskset`` (util-linux). The photos are Families In the
Wild group shots rebuilt from the train crops (``bench/family_corpus.py``: a grid of a
photo's faces, 1-8 each), written once to a folder under the system temp dir, never into
the repository. Four set-ups, each a fresh process, interleaved ``--repeat`` times
(medians; the machine is shared, so only same-run ratios mean anything):

- ``local2``: the local pool, 2 worker processes, every core;
- ``dask2``: the service serving a Dask scheduler with 2 workers of its own, every core:
  the difference to ``local2`` is Dask's overhead per photo (goal <= 15 ms);
- ``local1``: the service alone on one core (``taskset -c 0``, the pool in-process): a NAS;
- ``nas+desk``: the service on core 0 serving the scheduler with 1 worker of its own, and
  ``facecluster worker`` on core 1 (``taskset -c 1``): the NAS + desktop shape
  (goal >= 1.8x ``local1``);
- ``dask1``: as ``nas+desk`` without the desktop: what Dask costs the NAS core, in CPU a
  photo against ``local1`` (the ratio above is 2 x (local1's CPU) / (local1's + this)
  at best).

CPU is reported by role: the service process (client, the served scheduler, the own
workers' nannies, hashing), its own worker processes, the desktop's. On a shared machine
wall-time ratios mean little; the CPU a photo on the NAS core is what limits the shape.
``--child MODE --profile FILE`` records py-spy's raw stacks of one timed phase.

Each run waits until every worker has loaded the models, indexes a few photos to warm
up, then times the rest (photos/s, steady state). The 1-minute load average is printed
beside each run. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

MODES = ("local2", "dask2", "local1", "nas+desk", "dask1")
EXTRA: tuple[str, ...] = ()
WARM = 4
CORPUS = Path(tempfile.gettempdir()) / "facecluster-bench-cluster"


def build_corpus(n: int) -> list[Path]:
    """``n`` group shots from FIW crops, made once (outside the repository)."""
    import cv2
    from family_corpus import HOW_TO_GET, compose, fiw_root, list_crops

    out = CORPUS / f"photos-{n}"
    done = sorted(out.glob("*.jpg"))
    if len(done) == n:
        return done
    root = fiw_root()
    if root is None or not root.is_dir():
        sys.exit(f"no FIW photos: {HOW_TO_GET}")
    by_photo: dict[str, list[Path]] = defaultdict(list)
    for path, _family, _person, photo in list_crops(root):
        by_photo[photo].append(path)
    out.mkdir(parents=True, exist_ok=True)
    for i, (_photo, crops) in enumerate(sorted(by_photo.items())[:n]):
        cv2.imwrite(str(out / f"group-{i:04d}.jpg"), compose(crops[:8]),
                    [cv2.IMWRITE_JPEG_QUALITY, 92])
    return sorted(out.glob("*.jpg"))


def _config(mode: str, port: int, folder: Path):  # noqa: ANN202 - daemon.config.Config
    from daemon.config import load_config

    d = Path(tempfile.mkdtemp(prefix="fc-bench-"))
    workers = {"local2": 2, "dask2": 2, "local1": 1, "nas+desk": 1, "dask1": 1}[mode]
    text = (f'watch = ["{folder}"]\nstate_dir = "{d}/state"\nalbums_dir = "{d}/albums"\n'
            f'workers = {workers}\n[engine]\nmodels_dir = "{REPO / "models"}"\n')
    if mode in ("dask2", "nas+desk", "dask1"):
        text += f'[cluster]\nscheduler = "serve"\nlisten = "127.0.0.1:{port}"\n'
    (d / "config.toml").write_text(text)
    return load_config(d / "config.toml")


def _desk_worker(address: str, config: Path) -> subprocess.Popen:
    cmd = ["taskset", "-c", "1", sys.executable, "-m", "daemon", "--config", str(config),
           "worker", address, "--processes", "1"]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _cpu() -> dict[str, float]:
    """CPU seconds (user + system) so far of this process (the service: client, in-process
    scheduler, hashing, store), of its own worker processes (the pool's, or Dask's nannies
    and workers) and of the desktop's ``facecluster worker`` tree (``taskset -c 1``)."""
    import psutil  # distributed depends on it

    me = psutil.Process()
    out = {"service": 0.0, "own": 0.0, "desk": 0.0}
    desk: set[int] = set()
    spy: set[int] = set()
    for p in me.children(recursive=True):
        try:
            cmd = p.cmdline()
        except psutil.Error:
            continue
        if "record" in cmd and "--subprocesses" in cmd:
            spy.add(p.pid)  # the profiler (--profile): not the set-up's
        elif "worker" in cmd:
            desk |= {p.pid, *(c.pid for c in p.children(recursive=True))}
    for p in [me, *me.children(recursive=True)]:
        if p.pid in spy:
            continue
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        role = "service" if p.pid == me.pid else "desk" if p.pid in desk else "own"
        out[role] += t.user + t.system
    return out


def _profile(out: str | None) -> subprocess.Popen | None:
    """py-spy (pip install py-spy; a measuring tool, not a dependency) sampling this
    process and its children during the timed phase, as raw stacks into ``out``."""
    if not out:
        return None
    spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen([str(spy), "record", "--pid", str(os.getpid()), "--subprocesses",
                             "--nonblocking", "-f", "raw", "-o", out],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def child(mode: str, photos: list[Path], port: int, profile: str | None = None) -> dict:
    """One set-up in this process: photos/s in the steady state."""
    from daemon.indexer.models import sha256_file
    from daemon.remote import make_indexer

    cfg = _config(mode, port, photos[0].parent)
    indexer = make_indexer(cfg)
    desk = None
    with indexer:
        if mode in ("local2", "local1"):
            indexer.wait_loaded()
        else:
            client = indexer._client
            if mode == "nas+desk":
                desk = _desk_worker(client.scheduler.address, cfg.config_path)
            client.wait_for_workers(1 if mode == "dask1" else 2, timeout=300)
        digests = {p: sha256_file(p) for p in photos}
        list(indexer.imap(photos[:WARM], digests))
        spy = _profile(profile)
        cpu0, t0 = _cpu(), time.perf_counter()
        results = list(indexer.imap(photos[WARM:], digests))
        took, cpu1 = time.perf_counter() - t0, _cpu()
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        described = indexer.describe()
    if desk is not None:
        desk.terminate()
        desk.wait(30)
    faces = sum(len(getattr(r, "faces", ())) for _, r in results)
    n = len(results)
    by_role = {k: 1000 * (cpu1[k] - cpu0[k]) / n for k in cpu0}
    return {"mode": mode, "photos": n, "faces": faces, "seconds": took, "rate": n / took,
            "cpu_ms": sum(by_role.values()), "cpu_ms_by_role": by_role,
            "indexing": described}


def _run(mode: str, n: int, port: int, folder: str | None) -> dict:
    pin = ["taskset", "-c", "0"] if mode in ("local1", "nas+desk", "dask1") else []
    load = os.getloadavg()[0]
    cmd = [*pin, sys.executable, __file__, "--child", mode, "--photos", str(n),
           "--port", str(port), *(["--dir", folder] if folder else [])]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if out.returncode or not lines:
        sys.exit(f"{mode} failed:\n{out.stderr[-3000:]}")
    result = json.loads(lines[-1][7:])
    result["load"] = load
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=int, default=120)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="24 photos, one round")
    ap.add_argument("--child", choices=MODES + EXTRA, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=18786)
    ap.add_argument("--profile", metavar="FILE", help="with --child: py-spy's raw stacks of "
                    "the timed phase, every process of the set-up (needs py-spy)")
    ap.add_argument("--dir", help="index the first --photos JPEGs of this folder instead "
                    "(e.g. the throughput bench's 12 MP people corpus, where a photo costs "
                    "what a phone's does, not the ~15 ms of a small FIW group shot)")
    args = ap.parse_args()
    if args.quick:
        args.photos, args.repeat = 24, 1
    if args.dir:
        photos = sorted(Path(args.dir).glob("*.jpg"))[:args.photos]
        args.photos = len(photos)
    else:
        photos = build_corpus(args.photos)
    if args.child:
        result = child(args.child, photos, args.port, args.profile)
        print("RESULT " + json.dumps(result, default=str))
        return
    runs: dict[str, list[dict]] = defaultdict(list)
    for rnd in range(args.repeat):
        for mode in MODES:
            r = _run(mode, args.photos, args.port + rnd, args.dir)
            runs[mode].append(r)
            print(f"round {rnd + 1} {mode:9s} {r['rate']:6.2f} photos/s "
                  f"({r['photos']} photos, {r['faces']} faces, {r['seconds']:.1f} s, "
                  f"CPU {r['cpu_ms']:.0f} ms/photo; "
                  f"load {r['load']:.1f})", flush=True)
    report(runs, args.photos)


def _ratio(runs: dict[str, list[dict]], a: str, b: str) -> list[float]:
    return [x["rate"] / y["rate"] for x, y in zip(runs[a], runs[b], strict=True)]


def report(runs: dict[str, list[dict]], n: int) -> None:
    med = {m: statistics.median(r["rate"] for r in runs[m]) for m in MODES}
    per_round = [1000 / d["rate"] - 1000 / loc["rate"]
                 for d, loc in zip(runs["dask2"], runs["local2"], strict=True)]
    print(f"\n{n - WARM} photos timed per run, medians of {len(runs['local2'])} "
          "interleaved rounds (photos/s):")
    for m in MODES:
        print(f"  {m:9s} {med[m]:6.2f}")
    print(f"Dask overhead, wall ms per photo with 2 workers (dask2 - local2), per round: "
          f"{', '.join(f'{x:.1f}' for x in per_round)}; median {statistics.median(per_round):.1f}"
          f" ms (x2 = {2 * statistics.median(per_round):.1f} ms of worker time; goal <= 15)")
    cpu = [d["cpu_ms"] - loc["cpu_ms"] for d, loc in zip(runs["dask2"], runs["local2"],
                                                          strict=True)]
    print(f"Dask overhead, CPU ms per photo (all processes, dask2 - local2), per round: "
          f"{', '.join(f'{x:.1f}' for x in cpu)}; median {statistics.median(cpu):.1f} ms "
          "(less sensitive to the other load than wall time)")
    print("dask2 / local2, per round: "
          + ", ".join(f"{x:.2f}" for x in _ratio(runs, "dask2", "local2")))
    share = _ratio(runs, "nas+desk", "local1")
    print(f"nas+desk / local1 (one-core service alone), per round: "
          f"{', '.join(f'{x:.2f}' for x in share)}; median {statistics.median(share):.2f}x "
          "(goal >= 1.8)")
    nas = [d["cpu_ms"] - loc["cpu_ms"] for d, loc in zip(runs["dask1"], runs["local1"],
                                                          strict=True)]
    print(f"NAS core, Dask's CPU ms a photo (dask1 - local1), per round: "
          f"{', '.join(f'{x:.1f}' for x in nas)}; median {statistics.median(nas):.1f} ms")
    for m in MODES:
        roles = {k: statistics.median(r["cpu_ms_by_role"][k] for r in runs[m])
                 for k in ("service", "own", "desk")}
        print(f"  CPU ms a photo, {m:9s} " + ", ".join(f"{k} {v:.1f}" for k, v in roles.items()))


if __name__ == "__main__":
    main()
