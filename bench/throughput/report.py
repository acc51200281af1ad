"""The bench's honesty and its tables: the load check, and the medians it prints."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from bench.throughput.baseline import recall_vs_fr
from bench.throughput.common import median, spread
from bench.throughput.runs import STAGES, Run, ScanTime

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




@dataclass
class Measured:
    """Every repetition of one corpus in one format: steady runs per worker count, whole
    ``scan`` commands, per-stage CPU profiles, and face_recognition's runs (JPEG only)."""

    corpus: str
    kind: str
    photos: int
    ours: dict[int, list[Run]] = field(default_factory=dict)
    scans: list[ScanTime] = field(default_factory=list)
    old_scans: list[ScanTime] = field(default_factory=list)
    """The whole command with another checkout's code (``--old-checkout``), same run."""
    stages: list[dict[str, float]] = field(default_factory=list)
    fr: list[Run] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.corpus} {self.kind}"

    def scan_ms(self) -> float:
        """Whole-command wall milliseconds per photo (median)."""
        return 1000 * median([s.wall for s in self.scans]) / self.photos


def _line(name: str, rates: list[float], cpu_ms: float, fr: list[Run], extra: str) -> str:
    rate = median(rates)
    fr_rate = median([r.photos_per_s for r in fr]) if fr else float("nan")
    fr_cpu = median([1000 * r.cpu_seconds / r.photos for r in fr]) if fr else float("nan")
    vs = f"{rate / fr_rate:7.1f}x {fr_cpu / cpu_ms:7.1f}x" if fr else f"{'-':>8} {'-':>8}"
    return f"{name:<44} {f'{rate:.2f}{spread(rates)}':>18} {cpu_ms:8.0f} {vs}  {extra}"


def print_measured(m: Measured, fr: list[Run]) -> None:
    """The rows of one corpus and format; ratios against ``fr`` (the same corpus's JPEG
    baseline, same run)."""
    if m.fr:
        r = m.fr[0]
        print(_line(f"face_recognition, {m.label}", [x.photos_per_s for x in m.fr],
                    median([1000 * x.cpu_seconds / x.photos for x in m.fr]), fr,
                    f"faces {r.faces}, truth recall {r.found_truth}/{r.truth}"))
    for w, runs in m.ours.items():
        r = runs[0]
        vs = ""
        if fr:
            hits, total = recall_vs_fr(r, fr[0])
            vs = f", f_r recall {hits}/{total}"
        rss = max(max(x.rss_mb or [0]) for x in runs)
        print(_line(f"facecluster {w} worker{'s' if w > 1 else ''} steady, {m.label}",
                    [x.photos_per_s for x in runs],
                    median([1000 * x.cpu_seconds / x.photos for x in runs]), fr,
                    f"faces {r.faces}, truth recall {r.found_truth}/{r.truth}{vs}, "
                    f"peak RSS {rss:.0f} MB"))
    for name, scans in (("", m.scans), (" (old checkout)", m.old_scans)):
        if scans:
            s = scans[0]
            print(_line(f"facecluster scan, whole command{name}, {m.label}",
                        [m.photos / x.wall for x in scans],
                        median([1000 * x.cpu / m.photos for x in scans]), fr,
                        f"{s.albums} albums, {s.pictures} album pictures written"))


def print_report(sets: list[Measured], starts: list[ScanTime], loads: list[float],
                 load_note: str, backend: str, reps: int) -> None:
    print(f"\n== medians of {reps} interleaved repetition{'s' if reps > 1 else ''} "
          f"[min-max]; backends: {backend} ==")
    print(load_note)
    print(f"load average after each repetition: {', '.join(f'{x:.2f}' for x in loads)} "
          "(includes this bench's own work, ~1-2 on 2 cores)")
    print(f"\n{'pipeline, corpus, format':<44} {'photo/s':>18} {'CPU ms':>8} {'vs f_r':>8} "
          f"{'CPU vs':>8}")
    baselines = {m.corpus: m.fr for m in sets if m.fr}
    for m in sets:
        print_measured(m, baselines.get(m.corpus, []))
    print("steady = from the first photo to the last commit, pool already started; whole "
          "command = `python -m daemon scan` of the corpus, default settings, fresh state, "
          "incl. start-up, clustering and albums. CPU ms = per photo, all processes. "
          "vs f_r = photos/s against face_recognition on the same corpus's JPEGs, same run.")
    print("truth recall = pasted LFW faces found (a detection centred in the face); f_r recall "
          "= face_recognition's faces that we also found")
    _print_format_ratios(sets)
    walls, cpus = [s.wall for s in starts], [s.cpu for s in starts]
    print(f"\nstart-up: one-photo `facecluster scan` (whole command, subprocess): "
          f"{median(walls):.2f} s wall{spread(walls)}, {median(cpus):.2f} s CPU{spread(cpus)}")
    for m in sets:
        if m.stages:
            print_stages(m.stages, m.label)


def _print_format_ratios(sets: list[Measured]) -> None:
    """HEIC (or RAW) against JPEG per photo, whole command and steady CPU, per corpus."""
    jpeg = {m.corpus: m for m in sets if m.kind == "jpeg"}
    for m in sets:
        base = jpeg.get(m.corpus)
        if m.kind == "jpeg" or base is None or not m.scans or not base.scans:
            continue
        cpu = {x.label: median([1000 * r.cpu_seconds / r.photos for r in runs])
               for x in (m, base) for runs in list(x.ours.values())[:1]}
        print(f"{m.kind} / jpeg per photo, {m.corpus}: whole command "
              f"{m.scan_ms():.0f} / {base.scan_ms():.0f} ms = {m.scan_ms() / base.scan_ms():.2f}x"
              + (f"; steady CPU {cpu[m.label]:.0f} / {cpu[base.label]:.0f} ms = "
                 f"{cpu[m.label] / cpu[base.label]:.2f}x" if len(cpu) == 2 else ""))


def print_stages(stages: list[dict[str, float]], label: str = "") -> None:
    """The per-stage CPU table: median ms/photo over the repetitions [min-max]."""
    print(f"\nCPU ms/photo by stage{', ' + label if label else ''} (thread_time, 1 process, "
          f"medians of {len(stages)}):")
    for key in (*STAGES, "total"):
        values = [s[key] for s in stages]
        print(f"  {key:<15} {median(values):7.1f}{spread(values, '{:.1f}')}")
