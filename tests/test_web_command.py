"""``facecluster web``: says where it serves, and what holds its port when it cannot."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from net import free_port

from daemon.cli import main
from daemon.config import load_config
from daemon.web.server import WebThread


def _config(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'watch = ["photos"]\nstate_dir = "state"\nlabels_file = "labels.toml"\n'
                    f"[web]\nenabled = true\nport = {port}\n")
    return path


def test_web_while_the_service_serves_the_page_names_its_url(tmp_path: Path, capsys):
    port = free_port()
    config = _config(tmp_path, port)
    web = WebThread(load_config(config))  # as `facecluster run` serves it
    web.start()
    try:
        deadline = time.monotonic() + 20
        while not (web._server and web._server.started):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert main(["--config", str(config), "web"]) != 0
    finally:
        web.stop()
    err = capsys.readouterr().err
    assert err.startswith("facecluster: error: ")
    assert f"already served at http://127.0.0.1:{port}/" in err


def test_web_on_a_port_another_program_holds_says_so(tmp_path: Path, capsys):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        assert main(["--config", str(_config(tmp_path, port)), "web"]) != 0
    err = capsys.readouterr().err
    assert err.startswith("facecluster: error: ")
    assert f"another program listens on http://127.0.0.1:{port}/" in err and "port" in err


def test_web_prints_where_it_serves(tmp_path: Path):
    port = free_port()
    config = _config(tmp_path, port)
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "--config", str(config), "web"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    killer = threading.Timer(60, proc.kill)  # a silent process must not hang the test
    killer.start()
    try:
        line = proc.stdout.readline()
        assert line.strip() == f"serving the page at http://127.0.0.1:{port}/ (Ctrl-C stops it)"
    finally:
        killer.cancel()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
