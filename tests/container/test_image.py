"""The image as a NAS owner runs it: photos in, albums out on the host, naming through
``podman exec``, the page behind its password, a clean stop and a restart that keeps
the names. Needs the shared photos (``$FACECLUSTER_TESTDATA/photos/known``)."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import httpx
import pytest
from podman import free_port, image_size, podman, wait_for

PUID = 1234  # not root and not the image's default, so the id switch is what is tested
PASSWORD = "a family password"


@pytest.fixture()
def folders(tmp_path: Path, image: str) -> dict[str, Path]:
    """The host folders compose.yaml mounts, with config.toml edited to a free port."""
    d = {name: tmp_path / name for name in ("photos", "albums", "state", "config")}
    for p in d.values():
        p.mkdir()
    d["photos"].chmod(0o755)  # tmp_path's 0700 would hide the photos from PUID
    config = podman("run", "--rm", "--entrypoint", "cat", image,
                    "/etc/facecluster/config.toml").stdout
    port = free_port()
    d["config"].joinpath("config.toml").write_text(config.replace("port = 8765", f"port = {port}"))
    d["secret"] = tmp_path / "web-password"
    d["secret"].write_text(PASSWORD + "\n")
    d["port"] = port  # type: ignore[assignment]
    return d


@pytest.fixture()
def container(folders: dict, image: str):
    name = f"facecluster-test-{folders['port']}"
    podman("create", "--name", name, "--network=host", "-e", f"PUID={PUID}", "-e", f"PGID={PUID}",
           "-v", f"{folders['photos']}:/photos:ro", "-v", f"{folders['albums']}:/albums",
           "-v", f"{folders['state']}:/state", "-v", f"{folders['config']}:/config",
           "-v", f"{folders['secret']}:/run/secrets/facecluster_password:ro", image)
    try:
        yield name
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)


def _healthy(name: str) -> bool:
    return podman("healthcheck", "run", name, check=False).returncode == 0


def _people(name: str) -> list[dict]:
    return json.loads(podman("exec", name, "facecluster", "people", "--json").stdout)


def _albums(albums: Path) -> set[str]:
    return {p.name for p in albums.iterdir() if p.is_dir() and not p.name.startswith(".")}


def _sign_in_and_read(port: int) -> str:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        assert client.get("/").status_code == 303  # reachable from outside: sign in first
        page = client.get("/signin").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        wrong = client.post("/signin", data={"csrf": csrf, "password": "not it at all"})
        assert wrong.status_code == 403
        r = client.post("/signin", data={"csrf": csrf, "password": PASSWORD})
        assert r.status_code == 303, r.text
        home = client.get("/")
        assert home.status_code == 200
        return home.text


def test_image_has_no_compiler_and_reports_its_size(image: str):
    found = podman("run", "--rm", "--entrypoint", "sh", image, "-c",
                   "command -v gcc cc c++ clang make || true").stdout.split()
    assert found == []
    print(f"\nimage {image}: {image_size(image) / 1e6:.0f} MB")


def test_photos_the_user_cannot_read_are_reported_at_start(tmp_path: Path, image: str):
    hidden = tmp_path / "photos"
    hidden.mkdir(mode=0o700)  # root's only: PUID may not look inside
    ids = ["-e", f"PUID={PUID}", "-e", f"PGID={PUID}"]
    done = podman("run", "--rm", *ids, "-v", f"{hidden}:/photos:ro", image, "--version",
                  check=False)
    assert f"user {PUID}:{PUID} cannot read /photos" in done.stderr
    hidden.chmod(0o755)
    done = podman("run", "--rm", *ids, "-v", f"{hidden}:/photos:ro", image, "--version")
    assert "cannot read" not in done.stderr and "facecluster" in done.stdout


def test_container_names_people_and_keeps_them(container: str, folders: dict,
                                                shared_photos: Path):
    podman("start", container)
    wait_for("the service to report healthy", lambda: _healthy(container))
    uid = podman("exec", container, "sh", "-c", "stat -c %u /proc/1").stdout.strip()
    assert uid == str(PUID)  # the service itself runs as PUID, not root
    for person in ("obama", "biden", "kit_harington"):
        shutil.copytree(shared_photos / "known" / person, folders["photos"] / person)
    wait_for("three albums on the host", lambda: len(_albums(folders["albums"])) >= 3)
    biggest = max(_people(container), key=lambda p: p["photos"])
    podman("exec", container, "facecluster", "name", f"person-{biggest['id']:04d}", "Test Person")
    album = folders["albums"] / "Test Person"
    wait_for("the album renamed on the host", album.is_dir)
    photos = [p for p in album.iterdir() if not p.name.startswith(".")]
    assert len(photos) == biggest["photos"]
    assert all(p.read_bytes()[:2] == b"\xff\xd8" for p in photos)  # links resolve on the host
    labels = folders["config"] / "labels.toml"
    assert "Test Person" in labels.read_text() and labels.stat().st_uid == PUID
    assert "Test Person" in _sign_in_and_read(folders["port"])

    started = time.monotonic()
    podman("stop", "-t", "10", container)
    stopped = time.monotonic() - started
    state = podman("inspect", "--format", "{{.State.ExitCode}}", container).stdout.strip()
    assert state == "0" and stopped < 10, (state, stopped)
    print(f"\npodman stop took {stopped:.1f} s")

    podman("start", container)
    wait_for("the service to report healthy again", lambda: _healthy(container))
    names = {p["id"]: p["name"] for p in _people(container)}
    assert names[biggest["id"]] == "Test Person"
    assert "Test Person" in _albums(folders["albums"])
