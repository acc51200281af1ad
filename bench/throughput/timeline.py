"""Where one whole ``facecluster scan`` spends its wall time, from process start to exit.

Run as a script in place of ``python -m daemon`` (``--timeline``: :func:`scan_timeline`):
it wraps the pipeline's stages where they are (the very code the command runs), runs
the command's ``main`` and prints each mark to stderr as ``<seconds since start>
<parent CPU seconds> <mark>``: imports, the pool ready (the workers' models loaded),
first and last photo saved, clustering, albums, the workers' exit, ``main`` done. The
total wall time of the process, exit included, is the caller's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

MARKS: list[tuple[str, float, float]] = []


def _mark(name: str, at: float | None = None) -> None:
    start = float(os.environ["TIMELINE_START"])
    cpu = time.process_time() if at is None else float("nan")
    MARKS.append((name, (time.time() if at is None else at) - start, cpu))


def _wrap(owner: object, name: str, label: str) -> None:
    inner = getattr(owner, name)

    def timed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        _mark(label + " >")
        try:
            return inner(*args, **kwargs)
        finally:
            _mark(label + " <")

    setattr(owner, name, timed)


def _child() -> int:
    """The command, marked (runs in the timed process)."""
    _mark("python started")
    from daemon.cli import commands

    _mark("cli imported")
    from daemon.indexer import pool
    from daemon.stages import pipeline, sync

    _mark("pipeline imported")
    _wrap(pool.IndexPool, "__enter__", "pool ready")
    _wrap(pool.IndexPool, "close", "workers stopped")
    for name in ("index_photos", "sync_missing", "recluster", "write_albums", "close"):
        _wrap(pipeline.Pipeline, name, name)
    saved: list[float] = []
    save = sync.Sync._save

    def counted(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        saved.append(time.time())
        return save(self, *args, **kwargs)

    sync.Sync._save = counted
    main = commands.main

    def marked(argv):  # noqa: ANN001, ANN202
        code = main(argv)
        _mark("main done")
        if saved:
            _mark("first photo saved", saved[0])
            _mark("last photo saved", saved[-1])
        for name, t, cpu in sorted(MARKS, key=lambda m: m[1]):
            print(f"{t:7.3f} s  cpu {cpu:6.3f}  {name}", file=sys.stderr)
        return code

    commands.main = marked
    # The command's own way out (an older checkout has no entry(): main, then exit).
    if hasattr(commands, "entry"):
        commands.entry()
    return marked(sys.argv[1:])


def scan_timeline(config: Path, repo: Path, cwd: Path) -> str:
    """One whole scan of ``config`` with ``repo``'s code: its marks and total wall time."""
    start = time.time()
    env = {**os.environ, "PYTHONPATH": str(repo), "TIMELINE_START": repr(start)}
    done = subprocess.run([sys.executable, __file__, "--config", str(config), "scan"],
                          env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=True)
    total = time.time() - start
    marks = [line for line in done.stderr.splitlines() if " cpu " in line]
    return "\n".join([*marks, f"{total:7.3f} s  (process ended)"])


if __name__ == "__main__":
    sys.exit(_child())
