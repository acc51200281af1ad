"""``facecluster run`` with ``[web] enabled``: the service serves the page, an edit made on
it reaches the albums, and stopping the service stops the page."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx
import pytest
from net import free_port
from test_service import GUARD, RunningService

pytestmark = pytest.mark.slow


def _page(client: httpx.Client) -> str | None:
    try:
        r = client.get("/")
    except httpx.TransportError:
        return None  # the page's thread is still binding
    return r.text if r.status_code == 200 and "data-person=" in r.text else None


def _service(tmp_path: Path, yunet_file: Path, shared_photos: Path) -> RunningService:
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    shutil.copy2(yunet_file, models_dir / yunet_file.name)
    return RunningService(tmp_path, models_dir, shared_photos / "known")


def test_the_service_serves_the_page_and_its_edits_reach_the_albums(
    tmp_path: Path, yunet_file: Path, shared_photos: Path
) -> None:
    svc = _service(tmp_path, yunet_file, shared_photos)
    port = free_port()
    svc.cfg.write_text(svc.cfg.read_text() + f"[web]\nenabled = true\nport = {port}\n")
    base = f"http://127.0.0.1:{port}"
    svc.start()
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            page = svc.wait_for("the page lists people", lambda: _page(client), 90)
            assert isinstance(page, str)
            pid = re.search(r'data-person="(\d+)"', page).group(1)
            r = client.post("/name", data={
                "csrf": re.search(r'name="csrf" value="([^"]+)"', page).group(1),
                "digest": re.search(r'name="digest" value="([0-9a-f]{64})"', page).group(1),
                "person": pid, "name": "Named On The Page",
            })
            assert (r.status_code, r.headers["location"]) == (303, "/?done=named"), r.text
        assert svc.labels.read_text() == f'[people]\nperson-{int(pid):04d} = "Named On The Page"\n'
        svc.wait_for("the album renamed by the service",
                     lambda: "Named On The Page" in svc.contents(), 60)
        svc.stop()
        with pytest.raises(httpx.TransportError):
            httpx.get(base + "/", timeout=2)
    finally:
        svc.close()


def test_turning_the_page_on_and_off_in_the_config_applies_while_the_service_runs(
    tmp_path: Path, yunet_file: Path, shared_photos: Path
) -> None:
    svc = _service(tmp_path, yunet_file, shared_photos)
    plain = svc.cfg.read_text()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    svc.start()
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            assert _page(client) is None
            svc.cfg.write_text(plain + f"[web]\nenabled = true\nport = {port}\n")
            svc.wait_for("the page served after the config change",
                         lambda: _page(client), GUARD)
            svc.cfg.write_text(plain + f"[web]\nenabled = false\nport = {port}\n")
            svc.wait_for("the page stopped after the config change",
                         lambda: _page(client) is None, GUARD)
        # The config change may have started a rescan: the stop is tested from rest.
        svc.wait_for("idle", lambda: svc.status().get("phase") == "idle", GUARD)
        svc.stop()
    finally:
        svc.close()
