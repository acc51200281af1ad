"""CPU time of one HEIC decode: FFmpeg through PyAV (the default) against libheif.

Decodes every HEIC of a folder both ways, interleaved photo by photo, ``--repeat``
times, one thread each (as an indexing worker does), and prints per-photo medians of
CPU time (``time.process_time``: usable on a busy machine, where wall time is not),
split for the FFmpeg path into container parsing, HEVC decoding and BGR conversion.
Also checks that both give the same picture (mean absolute difference, same shape).

    PYTHONPATH=$PWD .venv/bin/python bench/heic_decode.py \
        /tmp/facecluster-throughput/people-v1-n40-s1-p12-heic [--repeat 3] [--photos 8]

The folder is made by ``bench/index_throughput.py --formats jpeg,heic``.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from pathlib import Path

import numpy as np

from daemon.indexer import heifbox, heifdecode

STEPS = ("parse", "HEVC decode", "to BGR", "FFmpeg path total", "libheif total")


def _libheif(data: bytes) -> np.ndarray:
    import pillow_heif

    heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True, bgr_mode=True)
    return np.asarray(heif)


def _timed(fn, *args):  # noqa: ANN001, ANN002, ANN202 - any callable
    t = time.process_time()
    out = fn(*args)
    return out, time.process_time() - t


def measure(datas: list[bytes], repeat: int) -> tuple[dict[str, list[float]], list[float]]:
    """Per-step CPU seconds, and per-photo FFmpeg/libheif ratios, over every pass."""
    took: dict[str, list[float]] = {s: [] for s in STEPS}
    ratios: list[float] = []
    for _ in range(repeat):
        for data in datas:
            layout, parse = _timed(heifbox.primary_layout, data)
            frames, hevc = _timed(heifdecode._frames, layout.tiles)
            _, bgr = _timed(heifdecode._bgr, frames[0], layout)
            _, fast = _timed(heifdecode.decode, heifbox.primary_layout(data))
            _, slow = _timed(_libheif, data)
            for step, s in zip(STEPS, (parse, hevc, bgr, fast, slow), strict=True):
                took[step].append(s)
            ratios.append(fast / slow)
    return took, ratios


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--photos", type=int, default=8, help="every n-th photo, this many")
    args = ap.parse_args()
    import pillow_heif

    pillow_heif.options.DECODE_THREADS = 1
    files = sorted(args.folder.glob("*.heic"))
    files = files[:: max(1, len(files) // args.photos)][: args.photos]
    datas = [f.read_bytes() for f in files]
    print(f"{len(datas)} photos of {args.folder}, load {os.getloadavg()[0]:.2f}", flush=True)
    diffs = [np.abs(heifdecode.decode(heifbox.primary_layout(d)).astype(np.int16)
                    - _libheif(d)).mean() for d in datas]
    took, ratios = measure(datas, args.repeat)
    for step in STEPS:
        print(f"  {step:18s} {statistics.median(took[step]) * 1000:7.1f} ms CPU per photo")
    print(f"  FFmpeg / libheif per photo: median {statistics.median(ratios):.3f} "
          f"[{min(ratios):.3f}-{max(ratios):.3f}], n={len(ratios)}; "
          f"mean abs pixel difference {max(diffs):.2f} at most; "
          f"load at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
