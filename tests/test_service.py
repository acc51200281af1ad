"""The service: its status file, and ``facecluster run`` end to end as a real process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon import status as status_mod
from daemon.status import ServiceStatus, read_service_status, write_service_status

REPO = Path(__file__).resolve().parent.parent


def _status(pid: int, phase: str = "idle") -> ServiceStatus:
    return ServiceStatus(
        pid=pid, started_at="2024-01-01T00:00:00+00:00", updated_at="2024-01-01T00:00:05+00:00",
        phase=phase, message="idle, 3 photos, 1 people", queue_length=2, last_recluster=None,
        labels_error="labels.toml: line 3: bad", engine="e", roots={"/p": "events"},
        counters={"indexed": 3},
    )


def test_status_file_round_trip(tmp_path: Path) -> None:
    write_service_status(tmp_path, _status(os.getpid()))
    got = read_service_status(tmp_path)
    assert got == _status(os.getpid())
    assert [p.name for p in tmp_path.iterdir()] == [status_mod.STATUS_NAME]  # no temp left


def test_status_of_a_dead_or_stopped_service_is_none(tmp_path: Path) -> None:
    assert read_service_status(tmp_path) is None
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    write_service_status(tmp_path, _status(int(dead.stdout)))
    assert read_service_status(tmp_path) is None
    write_service_status(tmp_path, _status(os.getpid(), phase="stopped"))
    assert read_service_status(tmp_path) is None
    (tmp_path / status_mod.STATUS_NAME).write_text("{not json")
    assert read_service_status(tmp_path) is None


def test_lower_priority_in_a_child(tmp_path: Path) -> None:
    code = (
        "import os; from daemon.priority import lower_priority; "
        "before = os.nice(0); lower_priority(before + 3); print(before, os.nice(0))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.split()
    assert int(out[1]) == int(out[0]) + 3


# -- end to end --------------------------------------------------------------------------


def wait_for(what: str, check: Callable[[], object], timeout: float = 60.0,
             proc: subprocess.Popen | None = None, log: Path | None = None) -> object:
    """Poll ``check`` until it returns something truthy; fail with context on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.2)
    tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n--- service log tail ---\n{tail}")


def album_contents(albums: Path, photos: Path) -> dict[str, frozenset[str]]:
    """Album folder -> the originals its entries point to, relative to ``photos``."""
    out: dict[str, frozenset[str]] = {}
    if not albums.is_dir():
        return out
    for folder in sorted(albums.iterdir()):
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        names = set()
        for entry in folder.iterdir():
            if entry.is_symlink():
                target = Path(os.path.normpath(entry.parent / os.readlink(entry)))
                names.add(str(target.relative_to(photos)))
        if names:
            out[folder.name] = frozenset(names)
    return out


def album_holding(contents: dict[str, frozenset[str]], photo: str) -> str | None:
    return next((f for f, names in contents.items() if photo in names), None)


class Notifications:
    """The NOTIFY_SOCKET a service manager would offer, read by a background thread."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                self.messages.append(self.sock.recv(65536).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    def saw(self, line: str, since: int = 0) -> bool:
        return any(line in m.splitlines() for m in list(self.messages)[since:])

    def close(self) -> None:
        self._closed.set()
        self._reader.join(timeout=5)
        self.sock.close()


@pytest.mark.slow
def test_run_end_to_end(tmp_path: Path, models_dir: Path, shared_photos: Path) -> None:
    known = shared_photos / "known"
    photos = tmp_path / "photos"
    for person, names in {
        "obama": ["obama.jpg", "obama2.jpg"],
        "biden": ["biden.jpg", "biden2.jpg"],
        "kit": ["john1.jpeg", "john2.jpeg"],
    }.items():
        (photos / person).mkdir(parents=True)
        src = known / ("kit_harington" if person == "kit" else person)
        for n in names:
            shutil.copy(src / n, photos / person / n)
    albums, state, labels = tmp_path / "albums", tmp_path / "state", tmp_path / "labels.toml"
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f"""
watch = ["{photos}"]
albums_dir = "{albums}"
state_dir = "{state}"
labels_file = "{labels}"
workers = 1
log_level = "info"
[engine]
detector = "yunet"
embedder = "dlib"
models_dir = "{models_dir}"
[daemon]
settle_seconds = 0.5
recluster_quiet_seconds = 2
rescan_interval = 0
"""
    )
    notify = Notifications(tmp_path / "notify.sock")
    log = tmp_path / "service.log"
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock")}

    def start() -> subprocess.Popen:
        seen = len(notify.messages)
        with open(log, "a") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "daemon", "--config", str(cfg), "run"],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            )
        wait_for("READY=1", lambda: notify.saw("READY=1", seen), 60, proc, log)
        return proc

    def stop(proc: subprocess.Popen) -> None:
        seen = len(notify.messages)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert notify.saw("STOPPING=1", seen)
        assert read_service_status(state) is None

    def contents() -> dict[str, frozenset[str]]:
        return album_contents(albums, photos)

    def status() -> dict:
        try:
            return json.loads((state / status_mod.STATUS_NAME).read_text())
        except (OSError, ValueError):
            return {}

    proc = start()
    try:
        # 1. The photos present at start end up as one album per person.
        people = {
            frozenset({"obama/obama.jpg", "obama/obama2.jpg"}),
            frozenset({"biden/biden.jpg", "biden/biden2.jpg"}),
            frozenset({"kit/john1.jpeg", "kit/john2.jpeg"}),
        }
        wait_for("three person albums", lambda: set(contents().values()) == people,
                 90, proc, log)
        svc = read_service_status(state)
        assert svc is not None and svc.pid == proc.pid
        assert svc.engine == "yunet-2023mar+dlib-resnet-v1"

        # 2. A photo copied in slowly joins its person's album once complete.
        new = photos / "obama" / "obama-480p.jpg"
        data = (known / "obama" / "obama-480p.jpg").read_bytes()
        with open(new, "wb") as fh:
            for i in range(0, len(data), 8192):
                fh.write(data[i:i + 8192])
                fh.flush()
                time.sleep(0.05)
        wait_for("the new photo in obama's album",
                 lambda: "obama/obama-480p.jpg"
                 in contents().get(album_holding(contents(), "obama/obama.jpg") or "", ()),
                 60, proc, log)
        assert json.loads(log.read_text().splitlines()[-1])  # logs are JSON lines

        # 3. labels.toml is live: rename, a broken edit keeps the last good labels, merge.
        obama_key = album_holding(contents(), "obama/obama.jpg")
        biden_key = album_holding(contents(), "biden/biden.jpg")
        kit_key = album_holding(contents(), "kit/john1.jpeg")
        assert obama_key and biden_key and kit_key
        assert obama_key.startswith("person-")
        labels.write_text(f'[people]\n{obama_key} = "Barack"\n')
        wait_for("album renamed", lambda: "obama/obama.jpg" in contents().get("Barack", ()),
                 30, proc, log)
        labels.write_text("[people\nbroken = \n")
        wait_for("labels error in status", lambda: status().get("labels_error"), 30, proc, log)
        assert "Barack" in contents()
        labels.write_text(
            f'[people]\n{obama_key} = "Barack"\n{biden_key} = "Friends"\n{kit_key} = "Friends"\n'
        )
        wait_for("merged album",
                 lambda: {"biden/biden.jpg", "kit/john1.jpeg"} <= contents().get("Friends", set()),
                 30, proc, log)
        assert status().get("labels_error") is None

        # 4. A deleted photo leaves its album; a moved one is followed.
        (photos / "kit" / "john2.jpeg").unlink()
        wait_for("deleted photo gone",
                 lambda: album_holding(contents(), "kit/john2.jpeg") is None, 30, proc, log)
        (photos / "moved").mkdir()
        (photos / "biden" / "biden2.jpg").rename(photos / "moved" / "biden2.jpg")
        wait_for("moved photo followed",
                 lambda: "moved/biden2.jpg" in contents().get("Friends", ())
                 and album_holding(contents(), "biden/biden2.jpg") is None, 30, proc, log)

        # 5. SIGHUP re-reads the config: a broken one is refused and the old one kept.
        good = cfg.read_text()
        cfg.write_text(good + "bogus_key = 1\n")
        proc.send_signal(signal.SIGHUP)
        wait_for("broken config refused", lambda: "config_invalid_kept_old" in log.read_text(),
                 30, proc, log)
        cfg.write_text(good)
        rescans = status()["counters"]["rescans"]
        proc.send_signal(signal.SIGHUP)
        wait_for("config reloaded and reconciled",
                 lambda: "config_reloaded" in log.read_text()
                 and status()["counters"]["rescans"] > rescans
                 and status().get("phase") == "idle", 60, proc, log)
        assert proc.poll() is None

        # 6. The watched folder goes away (unmounted share) and comes back: albums stay.
        before = contents()
        rescans = status()["counters"]["rescans"]
        away = tmp_path / "photos-away"
        photos.rename(away)
        wait_for("root reported gone",
                 lambda: status().get("roots", {}).get(str(photos)) == "gone", 30, proc, log)
        time.sleep(1.0)  # give a wrong reaction (emptying albums) the chance to happen
        assert contents() == before
        away.rename(photos)
        wait_for("root watched again and reconciled",
                 lambda: status().get("roots", {}).get(str(photos)) == "events"
                 and status()["counters"]["rescans"] > rescans
                 and status().get("phase") == "idle", 60, proc, log)
        assert contents() == before

        # 7. SIGTERM: clean exit 0 within 10 s.
        stop(proc)

        # 8. What arrives while it is down is picked up on restart.
        shutil.copy(known / "obama" / "obama-720p.jpg", photos / "obama" / "obama-720p.jpg")
        proc = start()
        wait_for("photo added while down",
                 lambda: "obama/obama-720p.jpg" in contents().get("Barack", ()), 60, proc, log)
        assert contents()["Friends"] >= {"moved/biden2.jpg", "kit/john1.jpeg"}
        stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()
