"""The systemd unit as installed, under a real systemd (PID 1 of a podman container made
from Debian's packages): ``systemd/install.sh``, then start (READY), the web page, naming
from the page and from ``facecluster name``, reload and stop; and the unit's
``systemd-analyze security`` exposure. Needs the shared photos."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import httpx
import pytest
from podman import HOST_CA, REPO, base_image, free_port, podman, wait_for

LABELS = "/var/lib/facecluster/labels.toml"


@pytest.fixture(scope="module")
def box(podman_ready: None, tmp_path_factory: pytest.TempPathFactory, shared_photos: Path):
    """A booted systemd container with the photos in /srv/photos and the checkout at /src."""
    photos = tmp_path_factory.mktemp("srv-photos")
    photos.chmod(0o755)  # mktemp's 0700 would hide the photos from the service's user
    for person in ("obama", "biden"):
        shutil.copytree(shared_photos / "known" / person, photos / person)
    name = f"facecluster-systemd-test-{os.getpid()}"
    ca = ["-v", f"{HOST_CA}:/run/host-ca.crt:ro", "-e", "PIP_CERT=/run/host-ca.crt"] \
        if HOST_CA.is_file() else []
    podman("run", "-d", "--name", name, "--systemd=always", "--network=host", *ca,
           "-v", f"{REPO}:/src:ro", "-v", f"{photos}:/srv/photos:ro",
           "-v", "facecluster-test-pip-cache:/root/.cache/pip", base_image("systemd"))
    try:
        wait_for("systemd to boot", lambda: _sh(name, "systemctl is-system-running") in
                 ("running", "degraded"), timeout=120)
        yield name
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)


def _sh(name: str, command: str, check: bool = False, timeout: float = 120) -> str:
    done = podman("exec", name, "sh", "-c", command, check=check, timeout=timeout)
    return done.stdout.strip()


def _name_from_page(port: int, name: str) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        home = client.get("/")
        assert home.status_code == 200, home.text  # this machine only: no sign-in
        pid = re.findall(r'data-person="(\d+)"', home.text)[0]
        tokens = {k: re.search(rf'name="{k}" value="([^"]+)"', home.text).group(1)
                  for k in ("csrf", "digest")}
        r = client.post("/name", data={**tokens, "person": pid, "name": name})
        assert r.status_code in (200, 303), r.text


def test_unit_as_installed_serves_names_reloads_and_stops(box: str):
    _sh(box, "sh /src/systemd/install.sh", check=True, timeout=1200)
    port = free_port()
    _sh(box, f"sed -i 's/^port = 8765/port = {port}/' /etc/facecluster/config.toml", check=True)
    # Type=notify: start returns once the service said READY=1 (or fails).
    _sh(box, "systemctl start facecluster", check=True, timeout=300)
    assert _sh(box, "systemctl is-active facecluster") == "active"
    wait_for("two albums", lambda: len(_sh(box, "ls /var/lib/facecluster/albums").split()) >= 2)
    wait_for("the web page", lambda: _answers(port))
    _name_from_page(port, "Named On Page")
    assert "Named On Page" in _sh(box, f"cat {LABELS}")
    cli = _sh(box, "facecluster name person-0002 'Named By CLI' && "
                   f"stat -c %U {LABELS} && cat {LABELS}", check=True)
    assert "Named By CLI" in cli and cli.splitlines()[1] == "facecluster"
    wait_for("the album renamed", lambda: "Named By CLI" in
             _sh(box, "ls /var/lib/facecluster/albums"))

    _sh(box, "systemctl reload facecluster", check=True)
    wait_for("the reload logged", lambda: "config_reloaded" in
             _sh(box, "journalctl -u facecluster --no-pager -o cat"))
    assert _sh(box, "systemctl is-active facecluster") == "active"
    exposure = _sh(box, "systemd-analyze security facecluster | tail -1")
    print(f"\n{exposure}")

    started = time.monotonic()
    _sh(box, "systemctl stop facecluster", check=True, timeout=60)
    stopped = time.monotonic() - started
    result = _sh(box, "systemctl show -p Result -p ExecMainStatus facecluster")
    assert result.split() == ["Result=success", "ExecMainStatus=0"], result
    assert stopped < 15, stopped
    print(f"systemctl stop took {stopped:.1f} s")
    journal = _sh(box, "journalctl -u facecluster --no-pager -o cat")
    assert "Traceback" not in journal and "service_stopped" in journal


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
    except httpx.HTTPError:
        return False
