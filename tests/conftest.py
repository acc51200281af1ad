"""Shared fixtures.

Real photos and the YuNet model come from the shared test data folder, located by one
setting: ``$FACECLUSTER_TESTDATA`` (default: ``../shared`` beside the repository; see
``shared_data.py``).
Tests that need it skip with a clear reason when it is absent, so a fresh clone passes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from shared_data import testdata_dir

# The indexer keeps dlib's converted graph in a cache folder (daemon/indexer/graphcache.py):
# the suite gets its own, so a graph cached by an older converter never stands in for the
# code under test. Set before any test (or service it starts) reads the environment.
os.environ.pop("CACHE_DIRECTORY", None)
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="facecluster-test-cache-")

YUNET_NAME = "face_detection_yunet_2023mar.onnx"


@pytest.fixture(scope="session")
def testdata() -> Path:
    """The shared data folder, or skip."""
    d = testdata_dir()
    if not (d / "photos").is_dir():
        pytest.skip(f"shared test data not found at {d} (set FACECLUSTER_TESTDATA)")
    return d


@pytest.fixture(scope="session")
def shared_photos(testdata: Path) -> Path:
    return testdata / "photos"


@pytest.fixture(scope="session")
def yunet_file(testdata: Path) -> Path:
    """The real YuNet ONNX file from the shared data, or skip."""
    p = testdata / "models" / YUNET_NAME
    if not p.is_file():
        pytest.skip(f"YuNet model not found at {p}")
    return p


@pytest.fixture()
def models_dir(tmp_path: Path, yunet_file: Path) -> Path:
    """A models folder holding a copy of the real YuNet file (as a user would place it)."""
    d = tmp_path / "models"
    d.mkdir()
    shutil.copy2(yunet_file, d / YUNET_NAME)
    return d


@pytest.fixture(autouse=True)
def _fresh_logging():
    """``main()`` points structlog at the test's captured stderr; don't leak it onward."""
    yield
    import structlog

    structlog.reset_defaults()


@pytest.fixture(scope="session")
def face_photo(shared_photos: Path):
    """A small real photo with one face (320x240), upright BGR pixels."""
    import cv2

    image = cv2.imread(str(shared_photos / "known" / "obama" / "obama_small.jpg"))
    assert image is not None
    return image
