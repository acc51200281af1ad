"""The running service and ``facecluster name``: the album follows, the user's file stays theirs.

Also: a changed config file applies without a SIGHUP.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _wait(what: str, check: Callable[[], object], proc: subprocess.Popen, log: Path,
          timeout: float = 90.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    tail = log.read_text()[-3000:] if log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n--- service log tail ---\n{tail}")


def _albums(albums: Path) -> dict[str, set[str]]:
    """Album folder -> the file names of the originals its entries lead to."""
    if not albums.is_dir():
        return {}
    return {
        d.name: {Path(os.path.realpath(e)).name for e in d.iterdir()}
        for d in albums.iterdir()
        if d.is_dir() and not d.name.startswith(".")
    }


USER_LABELS = """\
# Family names -- written by hand, please keep this comment.
#   (the cousins are still to be sorted out)

[people]   # one line per person
{biden} = "Joe"            # the neighbour

# end of the list
"""


def test_name_while_running_renames_the_album_and_keeps_the_file(
    tmp_path: Path, shared_photos: Path, models_dir: Path
) -> None:
    photos = tmp_path / "photos"
    for folder, src, names in (("obama", "obama", ["obama.jpg", "obama2.jpg"]),
                               ("biden", "biden", ["biden.jpg", "biden2.jpg"])):
        (photos / folder).mkdir(parents=True)
        for n in names:
            shutil.copy(shared_photos / "known" / src / n, photos / folder / n)
    albums, labels = tmp_path / "albums", tmp_path / "labels.toml"
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'watch = ["{photos}"]\nalbums_dir = "{albums}"\nstate_dir = "{tmp_path / "state"}"\n'
        f'labels_file = "{labels}"\nworkers = 1\nlog_level = "info"\n'
        f'[engine]\nmodels_dir = "{models_dir}"\n'
        "[daemon]\nsettle_seconds = 0.5\nrecluster_quiet_seconds = 2\nrescan_interval = 0\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("NOTIFY_SOCKET", None)
    log = tmp_path / "service.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", "--config", str(cfg), "run"],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        def album_of(photo: str) -> str | None:
            return next((a for a, names in _albums(albums).items() if photo in names), None)

        _wait("two person albums", lambda: album_of("obama.jpg") and album_of("biden.jpg"),
              proc, log)
        obama, biden = album_of("obama.jpg"), album_of("biden.jpg")
        assert obama and obama.startswith("person-") and biden
        before = USER_LABELS.format(biden=biden)
        labels.write_text(before)
        _wait("the hand-written name applied", lambda: album_of("biden.jpg") == "Joe", proc, log)

        res = subprocess.run(
            [sys.executable, "-m", "daemon", "--config", str(cfg), "name", obama, "Barack"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        )
        assert res.returncode == 0, res.stderr
        assert "running service applies it" in res.stdout
        _wait("album renamed", lambda: album_of("obama.jpg") == "Barack"
              and album_of("obama2.jpg") == "Barack", proc, log, timeout=30)
        assert obama not in _albums(albums)

        # Byte for byte, the user's file is unchanged but for one added line.
        after = labels.read_text()
        added = [line for line in after.splitlines(True) if line not in before.splitlines(True)]
        assert added == [f'{obama} = "Barack"\n']
        assert after.replace(added[0], "", 1) == before

        # The service's own reconcile counts as a scan for `status` (not "never").
        res = subprocess.run(
            [sys.executable, "-m", "daemon", "--config", str(cfg), "status", "--json"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        )
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["last_scan"]

        # A config change applies by itself (no SIGHUP): the service reloads it.
        cfg.write_text(cfg.read_text().replace('log_level = "info"', 'log_level = "debug"'))
        _wait("config reloaded without SIGHUP", lambda: "config_reloaded" in log.read_text(),
              proc, log, timeout=30)
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
