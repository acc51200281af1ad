"""Lowering the service's priority, tried in a child process (it cannot be raised back)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_lower_priority_in_a_child(tmp_path: Path) -> None:
    code = (
        "import os; from daemon.service.priority import lower_priority; "
        "before = os.nice(0); lower_priority(before + 3); print(before, os.nice(0))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.split()
    assert int(out[1]) == int(out[0]) + 3
