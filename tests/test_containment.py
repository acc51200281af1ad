"""Containment: facecluster writes only its state and albums dirs, and listens nowhere.

- the watched tree (bytes, mtimes, modes, listing, links) is identical after scans,
  hostile files, exports and a rebuild;
- symlinks planted in the albums dir are never followed by the writer;
- a ZIP export cannot be steered to write, or read, outside its target;
- the state dir is private (0700);
- no process of facecluster opens a listening socket.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import cv2
import hostile
import pytest
import structlog

from daemon.albums import (
    AlbumError,
    AlbumPlan,
    KnownPhotos,
    export_zip,
    write_albums,
    write_pictures,
)
from daemon.albums.export import ExportError
from daemon.cli.commands import main
from daemon.store import Store

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "daemon"


@pytest.fixture(autouse=True)
def _fresh_logging():
    """main() points structlog at this test's captured stderr; don't leave it to the next."""
    yield
    structlog.reset_defaults()


def snapshot(tree: Path) -> dict[str, tuple]:
    """Everything observable about a tree without following links: kind, mode, bytes, mtime."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(tree)):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            key = os.fsdecode(os.path.relpath(p, os.fsencode(tree)))
            if stat.S_ISLNK(st.st_mode):
                out[key] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[key] = ("dir", stat.S_IMODE(st.st_mode), st.st_mtime_ns)
            else:
                with open(p, "rb") as f:
                    data = f.read()
                out[key] = ("file", stat.S_IMODE(st.st_mode), st.st_mtime_ns, data)
    root = os.lstat(tree)
    out["."] = ("dir", stat.S_IMODE(root.st_mode), root.st_mtime_ns)
    return out


@pytest.fixture()
def library(tmp_path: Path, shared_photos: Path, yunet_file: Path) -> Path:
    """Real photos plus hostile files and odd names under one watched folder."""
    photos = tmp_path / "photos"
    for person in ("obama", "kit_harington"):
        shutil.copytree(shared_photos / "known" / person, photos / person)
    face = cv2.imread(str(shared_photos / "known" / "obama" / "obama_small.jpg"))
    junk = photos / "junk"
    junk.mkdir()
    hostile.zero_byte(junk)
    hostile.truncated_jpeg(junk, face)
    hostile.png_bomb(junk)
    hostile.symlink_loop(junk)
    hostile.dir_symlink_loop(junk)
    hostile.directory_named_photo(junk)
    hostile.oriented_jpeg(junk, face, 6)
    for raw in hostile.odd_names().values():
        hostile.write_named(junk, raw, hostile.encode_jpeg(face))
    (tmp_path / "config.toml").write_text(
        'watch = ["photos"]\nalbums_dir = "albums"\nstate_dir = "state"\nworkers = 1\n'
        f'[engine]\ndetector = "yunet"\nembedder = "dlib"\nmodels_dir = "{yunet_file.parent}"\n'
    )
    return tmp_path


def _cli(root: Path, *args: str) -> int:
    return main(["--config", str(root / "config.toml"), *args])


@pytest.mark.slow
def test_watched_tree_is_never_written(library: Path, capsys: pytest.CaptureFixture) -> None:
    photos = library / "photos"
    before = snapshot(photos)
    outside = {p.name for p in library.iterdir()}

    assert _cli(library, "scan") == 0
    capsys.readouterr()
    assert _cli(library, "people", "--json") == 0
    people = json.loads(capsys.readouterr().out)
    assert people, "no people found"
    zpath = library / "export.zip"
    assert _cli(library, "export", people[0]["key"], "--zip", str(zpath)) == 0
    assert _cli(library, "scan") == 0
    assert _cli(library, "rebuild") == 0
    assert _cli(library, "status") == 0

    assert snapshot(photos) == before, "the watched folder was modified"
    made = {p.name for p in library.iterdir()} - outside
    assert made <= {"state", "albums", "export.zip"}, f"unexpected files written: {made}"
    # Album entries lead into the library and nowhere else.
    for entry in (library / "albums").glob("*/*"):
        if entry.is_symlink():
            assert Path(os.path.realpath(entry)).is_relative_to(photos.resolve()), entry


def _one_plan(tmp: Path) -> AlbumPlan:
    src = tmp / "photos" / "a.jpg"
    src.parent.mkdir(exist_ok=True)
    src.write_bytes(b"\xff\xd8 photo \xff\xd9")
    return AlbumPlan("person-0001", (1,), (src,), ())


@pytest.mark.parametrize("mode", ["symlink", "copy"])
def test_planted_album_folder_symlink_is_not_followed(tmp_path: Path, mode: str) -> None:
    plan = _one_plan(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    albums = tmp_path / "albums"
    albums.mkdir()
    (albums / "person-0001").symlink_to(elsewhere)
    report = write_albums(albums, [plan], mode)
    assert report.errors >= 1
    assert list(elsewhere.iterdir()) == [], "the writer followed a planted symlink"
    assert (albums / "person-0001").is_symlink(), "the planted link was replaced or removed"


@pytest.mark.parametrize("name", [".facecluster", ".thumbnails"])
def test_planted_state_folder_symlink_is_refused(tmp_path: Path, name: str) -> None:
    plan = _one_plan(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    albums = tmp_path / "albums"
    albums.mkdir()
    (albums / name).symlink_to(elsewhere)
    with pytest.raises(AlbumError):
        write_albums(albums, [plan], "symlink")
        write_pictures(albums, [plan])
    assert list(elsewhere.iterdir()) == []


def test_planted_entry_symlink_is_not_overwritten(tmp_path: Path) -> None:
    """A link someone put where an entry belongs is left alone, and its target unwritten."""
    plan = _one_plan(tmp_path)
    albums = tmp_path / "albums"
    target = tmp_path / "victim.txt"
    target.write_text("keep me")
    write_albums(albums, [], "copy")
    (albums / "person-0001").mkdir()
    from daemon.albums import entry_name

    (albums / "person-0001" / entry_name(plan.photos[0])).symlink_to(target)
    write_albums(albums, [plan], "copy")
    assert target.read_text() == "keep me"


def _known(plan: AlbumPlan, tmp: Path) -> KnownPhotos:
    return KnownPhotos(frozenset(plan.photos), (tmp / "photos",))


def _tamper_manifest(albums: Path, entries: dict) -> None:
    path = albums / ".facecluster" / "manifest.json"
    data = json.loads(path.read_text())
    data["entries"].update(entries)
    path.write_text(json.dumps(data))


def test_export_members_stay_inside_the_target(tmp_path: Path) -> None:
    plan = _one_plan(tmp_path)
    albums = tmp_path / "albums"
    write_albums(albums, [plan], "symlink")
    link = next((albums / "person-0001").iterdir())
    _tamper_manifest(albums, {
        "person-0001/../../escape.jpg": {"source": str(plan.photos[0]), "mode": "symlink",
                                         "ino": link.lstat().st_ino},
        "../x/escape.jpg": {"source": str(plan.photos[0]), "mode": "symlink", "ino": 1},
    })
    for bad in ("../photos", "person-0001/..", ".facecluster", "/tmp"):
        with pytest.raises(ExportError):
            export_zip(albums, bad, tmp_path / "out.zip", known=_known(plan, tmp_path))
    zpath = tmp_path / "out" / "album.zip"
    zpath.parent.mkdir()
    assert export_zip(albums, "person-0001", zpath, known=_known(plan, tmp_path)) == 1
    with zipfile.ZipFile(zpath) as z:
        names = z.namelist()
    assert all("/" not in n and "\\" not in n and not n.startswith(".") for n in names), names
    assert sorted(p.name for p in zpath.parent.iterdir()) == ["album.zip"], "temp file left"
    assert not (tmp_path / "escape.jpg").exists()


def _album_and_secret(tmp: Path) -> tuple[AlbumPlan, Path, Path]:
    """An album of one photo, and a private file beside it that must never be exported."""
    plan = _one_plan(tmp)
    albums = tmp / "albums"
    write_albums(albums, [plan], "symlink")
    secret = tmp / "secret.txt"
    secret.write_text("private key material")
    secret.chmod(0o600)
    return plan, albums, secret


def test_export_ignores_a_tampered_manifest_source(tmp_path: Path) -> None:
    plan, albums, secret = _album_and_secret(tmp_path)
    manifest = json.loads((albums / ".facecluster" / "manifest.json").read_text())
    for rec in manifest["entries"].values():
        rec["source"] = str(secret)
    (albums / ".facecluster" / "manifest.json").write_text(json.dumps(manifest))
    zpath = tmp_path / "album.zip"
    export_zip(albums, "person-0001", zpath, known=_known(plan, tmp_path))
    with zipfile.ZipFile(zpath) as z:
        contents = [z.read(n) for n in z.namelist()]
    assert b"private key material" not in contents


def test_state_dir_is_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with Store.open(tmp_path / "deep" / "state"):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "deep" / "state").stat().st_mode) == 0o700


_SERVER_CALLS = re.compile(
    r"\.(bind|listen|accept)\(|create_server|start_server|HTTPServer|TCPServer|"
    r"serve_forever|SOCK_STREAM|AF_INET"
)


_THE_PAGE = PACKAGE / "web" / "server.py"
"""The one place that may listen: the web page binds its socket there (off by default)."""


def test_package_opens_no_listening_socket() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == _THE_PAGE:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if _SERVER_CALLS.search(code):
                offenders.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not offenders, "server-side socket code:\n" + "\n".join(offenders)


def _socket_inodes(pid: int) -> set[str]:
    found = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target[8:-1])
    return found


def _inet_inodes() -> set[str]:
    inodes = set()
    for name in ("tcp", "tcp6", "udp", "udp6", "raw", "raw6"):
        table = Path("/proc/net") / name
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 9:
                inodes.add(fields[9])
    return inodes


@pytest.mark.slow
def test_running_service_has_no_network_socket(tmp_path: Path, yunet_file: Path) -> None:
    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net here")
    (tmp_path / "photos").mkdir()
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        'watch = ["photos"]\nalbums_dir = "albums"\nstate_dir = "state"\nworkers = 1\n'
        f'[engine]\ndetector = "yunet"\nembedder = "dlib"\nmodels_dir = "{yunet_file.parent}"\n'
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "--config", str(cfg), "run"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 30
        seen: set[str] = set()
        while time.monotonic() < deadline and proc.poll() is None:
            seen |= _socket_inodes(proc.pid)
            if (tmp_path / "albums").exists() or time.monotonic() > deadline - 25:
                break
            time.sleep(0.5)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        seen |= _socket_inodes(proc.pid)
        assert not (seen & _inet_inodes()), "facecluster run holds an internet socket"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def test_export_refuses_a_planted_link_with_a_matching_manifest_entry(tmp_path: Path) -> None:
    """The issue's attack: link and manifest agree, so the inode check alone passes."""
    plan, albums, secret = _album_and_secret(tmp_path)
    planted = albums / "person-0001" / "holiday~00000000.jpg"
    planted.symlink_to(secret)
    _tamper_manifest(albums, {"person-0001/holiday~00000000.jpg": {
        "source": str(secret), "mode": "symlink", "ino": planted.lstat().st_ino,
        "mtime_ns": planted.lstat().st_mtime_ns,
    }})
    zpath = tmp_path / "out.zip"
    assert export_zip(albums, "person-0001", zpath, known=_known(plan, tmp_path)) == 1
    with zipfile.ZipFile(zpath) as z:
        assert b"private key material" not in [z.read(n) for n in z.namelist()]


def test_export_does_not_follow_a_link_planted_among_the_photos(tmp_path: Path) -> None:
    """A known photo path whose folder became a link leads outside: it is not read."""
    plan = _one_plan(tmp_path)
    albums = tmp_path / "albums"
    write_albums(albums, [plan], "symlink")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "b.jpg").write_text("private key material")
    sub = tmp_path / "photos" / "sub"
    sub.symlink_to(outside)
    album_link = albums / "person-0001" / "b~00000000.jpg"
    album_link.symlink_to(sub / "b.jpg")
    _tamper_manifest(albums, {"person-0001/b~00000000.jpg": {
        "source": str(sub / "b.jpg"), "mode": "symlink", "ino": album_link.lstat().st_ino,
        "mtime_ns": album_link.lstat().st_mtime_ns,
    }})
    known = KnownPhotos(frozenset([*plan.photos, sub / "b.jpg"]), (tmp_path / "photos",))
    zpath = tmp_path / "out.zip"
    assert export_zip(albums, "person-0001", zpath, known=known) == 1
    with zipfile.ZipFile(zpath) as z:
        assert b"private key material" not in [z.read(n) for n in z.namelist()]


def test_known_photos_locate_only_the_album_s_photos_inside_a_watched_folder(
        tmp_path: Path) -> None:
    plan = _one_plan(tmp_path)
    outside = tmp_path / "elsewhere" / "a.jpg"
    known = KnownPhotos(frozenset([*plan.photos, outside]), (tmp_path / "photos",))
    assert known.locate(plan.photos[0]) == (tmp_path / "photos", ("a.jpg",))
    assert known.locate(outside) is None  # known, but in no watched folder
    assert known.locate(tmp_path / "photos" / "b.jpg") is None  # watched, not the album's
    assert known.locate(tmp_path / "photos" / ".." / "photos" / "a.jpg") is None


def test_a_copied_entry_of_a_photo_not_in_the_album_is_not_exported(tmp_path: Path) -> None:
    plan = _one_plan(tmp_path)
    other = tmp_path / "photos" / "other.jpg"
    other.write_bytes(b"\xff\xd8 not this album \xff\xd9")
    albums = tmp_path / "albums"
    write_albums(albums, [plan, AlbumPlan("person-0002", (2,), (other,), ())], "copy")
    # The manifest on the share says person-0001 holds a copy of the other album's photo.
    entry = next((albums / "person-0002").iterdir())
    (albums / "person-0001" / entry.name).write_bytes(other.read_bytes())
    _tamper_manifest(albums, {f"person-0001/{entry.name}": {"source": str(other),
                                                            "mode": "copy"}})
    zpath = tmp_path / "out.zip"
    assert export_zip(albums, "person-0001", zpath, known=_known(plan, tmp_path)) == 1
    with zipfile.ZipFile(zpath) as z:
        assert b"\xff\xd8 not this album \xff\xd9" not in [z.read(n) for n in z.namelist()]
