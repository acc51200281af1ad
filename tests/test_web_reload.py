"""A config change starts, stops or restarts the service's page (no restart needed)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import httpx
from net import free_port

from daemon.config import from_dict
from daemon.service.page import restart_web


def _answers(port: int, within: float = 20.0) -> bool:
    """Whether the page at ``port`` answers within ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/signin", timeout=2).status_code == 200
        except httpx.TransportError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)


def test_the_page_follows_its_config(tmp_path: Path):
    off = from_dict({"watch": [str(tmp_path / "photos")], "state_dir": str(tmp_path / "state"),
                     "labels_file": str(tmp_path / "labels.toml")}, tmp_path)
    on = replace(off, web=replace(off.web, enabled=True, port=free_port()))
    moved = replace(on, web=replace(on.web, port=free_port()))
    assert restart_web(None, off, off) is None
    web = restart_web(None, off, on)
    try:
        assert web is not None and _answers(on.web.port)
        assert restart_web(web, on, replace(on, log_level="debug")) is web  # not its business
        web = restart_web(web, on, moved)
        assert web is not None and _answers(moved.web.port)
        assert not _answers(on.web.port, within=0)
        web = restart_web(web, moved, replace(moved, web=replace(moved.web, enabled=False)))
        assert web is None and not _answers(moved.web.port, within=0)
    finally:
        if web is not None:
            web.stop()
