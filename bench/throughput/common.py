"""What every part of the throughput bench shares: where things are, and how to summarise."""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # this checkout's daemon and tests.shared_data

from tests.shared_data import testdata_dir  # noqa: E402

SHARED = testdata_dir()
CACHE = Path(tempfile.gettempdir()) / "facecluster-throughput"
"""Corpora and models are made here once, outside the repository, never committed."""
YUNET = "face_detection_yunet_2023mar.onnx"
W, H = 4000, 3000


def models_dir() -> Path:
    """A models folder holding the shared YuNet file (the dlib ones come with their package)."""
    d = CACHE / "models"
    d.mkdir(parents=True, exist_ok=True)
    if not (d / YUNET).exists():
        shutil.copy(SHARED / "models" / YUNET, d / YUNET)
    return d


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    """`` [min-max]`` of several values; nothing for one."""
    if len(values) < 2:
        return ""
    return f" [{fmt.format(min(values))}-{fmt.format(max(values))}]"
