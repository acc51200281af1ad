"""sd_notify against a real AF_UNIX datagram socket, as systemd would provide it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from daemon.service import sdnotify


@pytest.fixture()
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def test_ready_and_status_reach_the_socket(notify_socket: socket.socket) -> None:
    assert sdnotify.ready("idle, 3 photos")
    assert notify_socket.recv(4096).decode() == "READY=1\nSTATUS=idle, 3 photos"
    assert sdnotify.status("indexing 1/2")
    assert notify_socket.recv(4096) == b"STATUS=indexing 1/2"
    assert sdnotify.watchdog_ping()
    assert notify_socket.recv(4096) == b"WATCHDOG=1"
    assert sdnotify.stopping()
    assert notify_socket.recv(4096) == b"STOPPING=1"


def test_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"facecluster-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.notify("READY=1")
        assert sock.recv(4096) == b"READY=1"


def test_no_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False


def test_unreachable_socket_is_reported_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens.sock"))
    assert sdnotify.notify("READY=1") is False


def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert sdnotify.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert sdnotify.watchdog_interval() == pytest.approx(15.0)
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert sdnotify.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_interval() == pytest.approx(15.0)
    monkeypatch.setenv("WATCHDOG_USEC", "junk")
    assert sdnotify.watchdog_interval() is None


def test_a_manager_that_stops_reading_does_not_block(notify_socket: socket.socket) -> None:
    sent = [sdnotify.status(f"line {i}") for i in range(300)]
    assert sent[0] is True
    assert sent[-1] is False  # the queue filled up; the send gave up instead of hanging
    assert notify_socket.recv(4096) == b"STATUS=line 0"
