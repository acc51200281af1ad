"""Status reporting: service.json, the phase, STATUS= lines and the watchdog keep-alive.

The reporter runs on a fake clock and tells a fake service manager, so its timing is
tested without waiting; the file is real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import structlog

from daemon.service import sdnotify
from daemon.service.status import (
    STATUS_EVERY,
    STATUS_NAME,
    Counters,
    ServiceStatus,
    StatusReporter,
    Surroundings,
    idle_message,
    read_service_status,
    write_service_status,
)
from daemon.stages.reports import IndexReport, PipelineStatus

# -- the status file ---------------------------------------------------------------------


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
    assert [p.name for p in tmp_path.iterdir()] == [STATUS_NAME]  # no temp left


def test_status_of_a_dead_or_stopped_service_is_none(tmp_path: Path) -> None:
    assert read_service_status(tmp_path) is None
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    write_service_status(tmp_path, _status(int(dead.stdout)))
    assert read_service_status(tmp_path) is None
    write_service_status(tmp_path, _status(os.getpid(), phase="stopped"))
    assert read_service_status(tmp_path) is None
    (tmp_path / STATUS_NAME).write_text("{not json")
    assert read_service_status(tmp_path) is None


# -- counters and the idle line ------------------------------------------------------------


def test_counters_sum_index_reports_into_the_flat_file_form() -> None:
    c = Counters()
    c.add_index(IndexReport(indexed=2, skipped=5, moved=1, copied=1, failed=1,
                            new_face_ids=[1, 2, 3]))
    c.add_index(IndexReport(indexed=1, new_face_ids=[4]))
    c.removed, c.assigned, c.reclusters = 2, 3, 1
    assert c.as_dict() == {
        "indexed": 3, "unchanged": 5, "moved": 1, "copied": 1, "failed": 1, "removed": 2,
        "new_faces": 4, "assigned": 3, "reclusters": 1, "rescans": 0, "album_writes": 0,
        "errors": 0,
    }
    assert c.photos.new_face_ids == []  # counted, not kept: the service runs for months


def _library(photos: int, people: int, labels_error: str | None = None) -> PipelineStatus:
    return PipelineStatus(engine="e", photos={"indexed": photos - 1, "failed": 1}, faces=9,
                          people=people, last_scan=None, last_recluster=None,
                          labels_error=labels_error)


def test_idle_line_says_photos_people_and_what_is_wrong() -> None:
    assert idle_message(_library(3412, 57), 0) == "idle, 3412 photos, 57 people"
    assert idle_message(_library(3, 1, "line 2: bad"), 2) == (
        "idle, 3 photos, 1 people, labels.toml has an error, 2 folder(s) missing"
    )
    assert idle_message(None, 1) == "idle, 1 folder(s) missing"  # the library query failed


# -- the reporter on a fake clock -----------------------------------------------------------


class FakeManager:
    """Records what a service manager would receive."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def ready(self, status: str | None = None) -> bool:
        self.lines.append(f"READY=1 {status}")
        return True

    def status(self, text: str) -> bool:
        self.lines.append(f"STATUS={text}")
        return True

    def watchdog_ping(self) -> bool:
        self.lines.append("WATCHDOG=1")
        return True

    def stopping(self) -> bool:
        self.lines.append("STOPPING=1")
        return True


class Rig:
    def __init__(self, state: Path, watchdog_every: float | None = None) -> None:
        self.now = 0.0
        self.state = state
        self.manager = FakeManager()
        self.parts = Surroundings(queue_length=4, last_recluster="2024-01-01T00:00:00+00:00",
                                  engine="e", roots={"/p": "events"})
        self.reporter = StatusReporter(state, lambda: self.parts, watchdog_every=watchdog_every,
                                       clock=lambda: self.now, manager=self.manager)

    def file(self) -> dict:
        return json.loads((self.state / STATUS_NAME).read_text())


def test_the_service_manager_protocol_is_what_sdnotify_offers() -> None:
    for name in ("ready", "status", "watchdog_ping", "stopping"):
        assert callable(getattr(sdnotify, name))


def test_a_new_phase_is_written_and_told_at_once(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.reporter.set_phase("indexing", "indexing 0/40")
    assert rig.manager.lines == ["STATUS=indexing 0/40"]
    got = rig.file()
    assert (got["phase"], got["message"], got["queue_length"], got["engine"]) == (
        "indexing", "indexing 0/40", 4, "e")
    assert got["roots"] == {"/p": "events"} and got["pid"] == os.getpid()
    rig.reporter.set_phase("indexing", "indexing 0/40")
    assert rig.manager.lines == ["STATUS=indexing 0/40"], "an unchanged phase is not re-sent"
    rig.reporter.set_phase("idle")
    assert rig.manager.lines[-1] == "STATUS=idle" and rig.file()["message"] == "idle"


def test_the_file_is_rewritten_every_few_seconds_meanwhile(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.reporter.keepalive()  # the first keep-alive writes
    rig.reporter.counters.rescans = 1
    rig.now += STATUS_EVERY - 0.1
    rig.reporter.keepalive()
    assert rig.file()["counters"]["rescans"] == 0
    rig.now += 0.1
    rig.reporter.keepalive()
    assert rig.file()["counters"]["rescans"] == 1


def test_the_watchdog_is_fed_once_per_interval(tmp_path: Path) -> None:
    rig = Rig(tmp_path, watchdog_every=15.0)
    for _ in range(5):  # at 0, 10, 20, 30 and 40 s
        rig.reporter.keepalive()
        rig.now += 10.0
    assert rig.manager.lines.count("WATCHDOG=1") == 3  # at 0, 20 and 40 s


def test_no_watchdog_no_pings(tmp_path: Path) -> None:
    rig = Rig(tmp_path, watchdog_every=None)
    for _ in range(3):
        rig.reporter.keepalive()
        rig.now += 100.0
    assert "WATCHDOG=1" not in rig.manager.lines


def test_ready_then_stopping_then_stopped(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.reporter.ready("starting: reconciling with the folders")
    assert rig.manager.lines == ["READY=1 starting: reconciling with the folders"]
    assert read_service_status(tmp_path) is not None
    rig.reporter.stopping()
    assert rig.manager.lines[-1] == "STOPPING=1" and rig.file()["phase"] == "stopping"
    rig.reporter.stopped()
    assert rig.file()["phase"] == "stopped"
    assert read_service_status(tmp_path) is None


def test_a_failed_write_is_logged_not_raised(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "missing")
    with structlog.testing.capture_logs() as logs:
        rig.reporter.set_phase("idle")
    assert [e["event"] for e in logs] == ["status_write_failed"]
