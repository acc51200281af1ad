"""Where the shared test data is: the one place that knows ``$FACECLUSTER_TESTDATA``.

It defaults to ``../shared`` beside the repository. The tests (through ``conftest.py``)
and the bench scripts (which put the repository root on ``sys.path`` and import
``tests.shared_data``) both ask here; product code never does.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def testdata_dir() -> Path:
    """Where the shared test data is expected to be (it may be absent)."""
    return Path(os.environ.get("FACECLUSTER_TESTDATA", REPO.parent / "shared")).resolve()
