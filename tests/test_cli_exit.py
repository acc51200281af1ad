"""How the ``facecluster`` process ends: a scan leaves without the interpreter's teardown,
and must lose nothing by it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_a_scan_process_ends_with_its_output_and_albums_written(
    tmp_path: Path, models_dir: Path, shared_photos: Path
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("obama.jpg", "obama2.jpg"):
        shutil.copy2(shared_photos / "known" / "obama" / name, photos / name)
    (tmp_path / "config.toml").write_text(
        'watch = ["photos"]\nalbums_dir = "albums"\nstate_dir = "state"\n'
        f'labels_file = "labels.toml"\nworkers = 2\n[engine]\nmodels_dir = "{models_dir}"\n'
    )
    # Buffered output, as in a pipe: what the command printed last must still come out.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "--config", "config.toml", "scan"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "photos: 2 indexed" in done.stdout and done.stdout.rstrip().endswith(" s")
    # The store is whole and the lock let go: a second scan finds both photos unchanged.
    again = subprocess.run(
        [sys.executable, "-m", "daemon", "--config", "config.toml", "scan"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert again.returncode == 0 and "2 unchanged" in again.stdout, again.stderr
