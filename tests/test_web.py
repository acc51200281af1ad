"""The web page over HTTP on a real scan of the shared photos.

One scan of the known people (YuNet + dlib) per module; every test starts from an empty
labels.toml, edits through the page and then lets the pipeline write the albums, as the
service does after noticing the labels changed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from net import free_port
from starlette.testclient import TestClient

from daemon.cli.commands import main
from daemon.config import load_config
from daemon.web.app import create_app
from daemon.web.auth import SignInLimiter, set_password

pytestmark = pytest.mark.slow

KNOWN = ["alex_lacamoire", "biden", "kit_harington", "obama", "rose_leslie"]
BASE = "http://127.0.0.1"
LOCAL = ("127.0.0.1", 50000)
"""A browser on this machine (the test client's own default is no address)."""


@pytest.fixture(scope="module")
def scanned(tmp_path_factory, shared_photos: Path, yunet_file: Path) -> Path:
    """A scanned library of the five known people plus one group photo."""
    root = tmp_path_factory.mktemp("web")
    photos = root / "photos"
    for person in KNOWN:
        shutil.copytree(shared_photos / "known" / person, photos / person)
    (photos / "groups").mkdir()
    shutil.copy2(shared_photos / "groups" / "obama_and_biden.jpg", photos / "groups")
    (root / "secret.txt").write_text("top secret outside every watched folder\n")
    return scan(root, yunet_file)


def scan(root: Path, yunet_file: Path) -> Path:
    """Scan ``root/photos`` with YuNet + dlib, as a user's config would."""
    (root / "models").mkdir()
    shutil.copy2(yunet_file, root / "models" / yunet_file.name)
    (root / "config.toml").write_text(
        'watch = ["photos"]\nalbums_dir = "albums"\nstate_dir = "state"\n'
        'labels_file = "labels.toml"\nworkers = 1\n'
        '[engine]\ndetector = "yunet"\nembedder = "dlib"\nmodels_dir = "models"\n'
    )
    assert main(["--config", str(root / "config.toml"), "scan"]) == 0
    return root


@pytest.fixture()
def lib(scanned: Path) -> Iterator[Path]:
    """The scanned library with empty labels and albums written from them."""
    yield from unlabelled(scanned)


def unlabelled(root: Path) -> Iterator[Path]:
    """``root`` with no labels.toml and albums to match, for one test."""
    (root / "labels.toml").unlink(missing_ok=True)
    write_albums(root)
    yield root
    (root / "labels.toml").unlink(missing_ok=True)


def write_albums(root: Path) -> None:
    """What the service does within seconds of a labels edit."""
    from daemon.stages.pipeline import Pipeline

    with Pipeline(load_config(root / "config.toml")) as pipeline:
        assert pipeline.reload_labels() is None
        pipeline.write_albums()


def albums(root: Path) -> dict[str, set[str]]:
    """Album folder -> names of the photos it links to."""
    out = {}
    for d in sorted((root / "albums").iterdir()):
        if d.is_dir() and not d.name.startswith("."):
            out[d.name] = {Path(os.path.realpath(e)).name for e in d.iterdir()}
    return out


def client_for(root: Path, **web) -> TestClient:
    cfg = load_config(root / "config.toml")
    if web:
        cfg = replace(cfg, web=replace(cfg.web, **web))
    return TestClient(create_app(cfg), base_url=BASE, client=LOCAL)


def form_tokens(client: TestClient, url: str = "/") -> dict[str, str]:
    r = client.get(url)
    assert r.status_code == 200, r.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', r.text).group(1)
    digest = re.search(r'name="digest" value="([0-9a-f]{64})"', r.text).group(1)
    return {"csrf": csrf, "digest": digest}


def people(client: TestClient) -> list[int]:
    """Person ids in the people page's order (largest first)."""
    return [int(x) for x in re.findall(r'data-person="(\d+)"', client.get("/").text)]


def person_album(root: Path, pid: int) -> set[str]:
    return albums(root)[f"person-{pid:04d}"]


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    """Size and mtime of every file an action must not touch (all but labels.toml, its
    writers' lock file and the picture cache)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and rel not in ("labels.toml", ".labels.toml.lock") \
                and not rel.startswith("state/web-cache") \
                and not rel.endswith(("-shm", "-wal")):
            out[rel] = (p.stat().st_size, p.stat().st_mtime_ns)
    return out


def labels_text(root: Path) -> str:
    p = root / "labels.toml"
    return p.read_text() if p.exists() else ""


# -- pages ------------------------------------------------------------------------------


def test_pages_show_people_faces_and_status(lib: Path):
    client = client_for(lib)
    r = client.get("/")
    assert r.status_code == 200
    ids = people(client)
    assert len(ids) >= 5
    assert r.text.count("unnamed</span>") == len(ids)
    assert 'loading="lazy"' in r.text
    top = ids[0]
    page = client.get(f"/person/{top}").text
    face_ids = re.findall(r'/face/(\d+)\.jpg', page)
    assert face_ids and f"/photo/{face_ids[0]}" in page
    assert "May be the same person" in page
    pic = client.get(f"/face/{face_ids[0]}.jpg")
    assert pic.status_code == 200 and pic.content[:3] == b"\xff\xd8\xff"
    assert (lib / "state" / "web-cache" / "faces").is_dir()  # cached on disk
    assert client.get(f"/person/{top}/montage.jpg").content[:3] == b"\xff\xd8\xff"
    assert client.get(f"/person/{top}/face.jpg").content[:3] == b"\xff\xd8\xff"
    photo = client.get(f"/photo/{face_ids[0]}")
    assert photo.status_code == 200 and len(photo.content) > 1000
    status = client.get("/status").text
    assert "not running" in status and "faces" in status


def test_status_says_idle_once(lib: Path):
    """Issue 21 item 25: the page read "idle — idle, 87 photos"."""
    from daemon.service.status import ServiceStatus, write_service_status

    write_service_status(lib / "state", ServiceStatus(
        os.getpid(), "t", "t", "idle", "idle, 87 photos, 5 people", 0, None, None, "e"))
    try:
        status = client_for(lib).get("/status").text
    finally:
        (lib / "state" / "service.json").unlink()
    assert "idle, 87 photos, 5 people" in status and "idle — idle" not in status


# -- actions ----------------------------------------------------------------------------


def test_name_rename_and_album_follows(lib: Path):
    client = client_for(lib)
    pid = people(client)[0]
    before = person_album(lib, pid)
    untouched = tree_state(lib)
    r = client.post("/name", data={**form_tokens(client), "person": str(pid), "name": "Barack",
                                   "next": f"/person/{pid}"}, follow_redirects=False)
    assert tree_state(lib) == untouched  # the action wrote labels.toml and nothing else
    assert r.status_code == 303 and r.headers["location"] == f"/person/{pid}?done=named"
    assert labels_text(lib) == f'[people]\nperson-{pid:04d} = "Barack"\n'
    write_albums(lib)
    assert albums(lib)["Barack"] == before
    assert f"person-{pid:04d}" not in albums(lib)
    client.post("/name", data={**form_tokens(client), "person": str(pid), "name": "Obama"})
    assert labels_text(lib) == f'[people]\nperson-{pid:04d} = "Obama"\n'
    write_albums(lib)
    assert "Barack" not in albums(lib) and albums(lib)["Obama"] == before


def test_merge_two_people_into_one_album(lib: Path):
    client = client_for(lib)
    a, b = people(client)[:2]
    union = person_album(lib, a) | person_album(lib, b)
    r = client.post("/merge", data={**form_tokens(client), "person": [str(a), str(b)],
                                    "name": "Family"})
    assert r.status_code == 200 and "People merged" in r.text
    text = labels_text(lib)
    assert f'person-{a:04d} = "Family"' in text and f'person-{b:04d} = "Family"' in text
    write_albums(lib)
    assert albums(lib)["Family"] == union
    # merging needs two people
    r = client.post("/merge", data={**form_tokens(client), "person": str(a), "name": "X"})
    assert r.status_code == 400 and "two people" in r.text


def test_hide_and_show_again(lib: Path):
    client = client_for(lib)
    pid = people(client)[0]
    client.post("/hide", data={**form_tokens(client), "person": str(pid), "hidden": "1"})
    assert labels_text(lib) == f"[people]\nperson-{pid:04d} = {{hide = true}}\n"
    write_albums(lib)
    assert f"person-{pid:04d}" not in albums(lib)
    client.post("/hide", data={**form_tokens(client), "person": str(pid), "hidden": "0"})
    write_albums(lib)
    assert f"person-{pid:04d}" in albums(lib)


def test_an_edit_reads_labels_toml_once(lib: Path, monkeypatch: pytest.MonkeyPatch):
    """Who is known and who was hidden together come from one reading of the file."""
    from daemon.web.library import Library

    client = client_for(lib)
    a, b = people(client)[:2]
    client.post("/name", data={**form_tokens(client), "person": [str(a), str(b)],
                               "name": "Pair"})
    client.post("/hide", data={**form_tokens(client), "person": str(a), "hidden": "1"})
    assert labels_text(lib).count("hide = true") == 2
    tokens = form_tokens(client, f"/person/{a}")
    reads = []
    real = Library.labels
    monkeypatch.setattr(Library, "labels", lambda self, d: reads.append(d) or real(self, d))
    r = client.post("/hide", data={**tokens, "person": str(a), "hidden": "0"},
                    follow_redirects=False)
    assert r.status_code == 303
    assert len(reads) == 1
    assert "hide" not in labels_text(lib)  # both shown again, as they were hidden


def _face_of(client: TestClient, pid: int) -> tuple[int, str]:
    """A face of the person whose photo holds no other face of theirs, and its file."""
    page = client.get(f"/person/{pid}").text
    items = re.findall(r'data-face="(\d+)".*?title="([^"]+)"', page, re.S)
    counts: dict[str, int] = {}
    for _, path in items:
        counts[path] = counts.get(path, 0) + 1
    fid, path = next((f, p) for f, p in items if counts[p] == 1)
    return int(fid), path


def test_not_this_face_and_not_this_photo(lib: Path):
    client = client_for(lib)
    pid = people(client)[0]
    fid, path = _face_of(client, pid)
    name = Path(path).name
    assert name in person_album(lib, pid)
    r = client.post("/exclude", data={**form_tokens(client, f"/person/{pid}"),
                                      "person": str(pid), "entry": f"face-{fid}"})
    assert r.status_code == 200
    assert labels_text(lib) == f'[people]\nperson-{pid:04d} = {{exclude = ["face-{fid}"]}}\n'
    write_albums(lib)
    assert name not in person_album(lib, pid)
    (lib / "labels.toml").unlink()
    rel = Path(path).relative_to(lib / "photos").as_posix()
    client.post("/exclude", data={**form_tokens(client, f"/person/{pid}"),
                                  "person": str(pid), "entry": f"photo-{fid}"})
    assert labels_text(lib) == f'[people]\nperson-{pid:04d} = {{exclude = ["{rel}"]}}\n'
    write_albums(lib)
    assert name not in person_album(lib, pid)


def test_not_this_face_leaves_the_counts_and_pictures_as_facecluster_people(lib: Path, capsys):
    client = client_for(lib)
    pid = people(client)[0]
    best = client.get(f"/person/{pid}/face.jpg").content
    shown = re.findall(r'data-face="(\d+)"', client.get(f"/person/{pid}").text)
    fid = next(f for f in shown if client.get(f"/face/{f}.jpg").content == best)
    client.post("/exclude", data={**form_tokens(client, f"/person/{pid}"),
                                  "person": str(pid), "entry": f"face-{fid}"})
    write_albums(lib)
    capsys.readouterr()
    assert main(["--config", str(lib / "config.toml"), "people", "--json"]) == 0
    row = next(r for r in json.loads(capsys.readouterr().out) if r["id"] == pid)
    page = client.get(f"/person/{pid}").text
    assert f'{row["key"]} · {row["faces"]} faces · {row["photos"]} photos' in page
    assert re.findall(r'data-face="(\d+)"', page) == shown  # still listed, to see it
    assert client.get(f"/person/{pid}/face.jpg").content != best


def test_undo_restores_the_file_byte_for_byte(lib: Path):
    (lib / "labels.toml").write_text("# my names\n[people]\n\n# end\n")
    write_albums(lib)
    client = client_for(lib)
    pid = people(client)[0]
    original = labels_text(lib)
    before = albums(lib)
    assert "Undo last change" not in client.get("/").text
    client.post("/name", data={**form_tokens(client), "person": str(pid), "name": "Grandma"})
    assert "Grandma" in labels_text(lib) and "# my names" in labels_text(lib)
    page = client.get("/").text
    assert "Undo last change" in page
    r = client.post("/undo", data=form_tokens(client))
    assert r.status_code == 200 and "undone" in r.text
    assert labels_text(lib) == original
    write_albums(lib)
    assert albums(lib) == before
    r = client.post("/undo", data=form_tokens(client))
    assert r.status_code == 400 and "nothing to undo" in r.text


def test_a_hand_edit_since_the_page_was_drawn_is_refused(lib: Path):
    client = client_for(lib)
    pid = people(client)[0]
    tokens = form_tokens(client)
    hand = '[people]\nperson-9999 = "typed by hand"  # keep me\n'
    (lib / "labels.toml").write_text(hand)
    r = client.post("/name", data={**tokens, "person": str(pid), "name": "Web"})
    assert r.status_code == 409
    assert "changed since it was read" in r.text
    assert labels_text(lib) == hand


def test_a_broken_labels_file_shows_the_last_good_names_as_the_albums_do(lib: Path):
    client = client_for(lib)
    pid = people(client)[0]
    client.post("/name", data={**form_tokens(client), "person": str(pid), "name": "Barack"})
    write_albums(lib)  # the service takes the file in: it is the last good one now
    (lib / "labels.toml").write_text('[people]\nperson-0001 = "unclosed\n')
    untouched = tree_state(lib)
    page = client.get("/").text
    assert "labels.toml has a problem" in page
    assert "Barack" in page and "unnamed</span>" in page
    assert f"/person/{pid}" in page
    assert tree_state(lib) == untouched  # the last good labels are read, never written


def _card(page: str, pid: int) -> str:
    """The people page's card of ``pid``."""
    return re.search(rf'<li class="person[^"]*" data-person="{pid}">(.*?)</li>', page,
                     re.S).group(1)


def _faces_listed(client: TestClient, pid: int) -> set[int]:
    return {int(f) for f in re.findall(r'data-face="(\d+)"', client.get(f"/person/{pid}").text)}


def test_people_merged_by_name_are_one_card_and_one_page(lib: Path):
    client = client_for(lib)
    a, b = sorted(people(client)[:2])
    faces = _faces_listed(client, a) | _faces_listed(client, b)
    union = person_album(lib, a) | person_album(lib, b)
    for pid in (a, b):  # named one at a time, as a hand edit would
        r = client.post("/name", data={**form_tokens(client), "person": str(pid),
                                       "name": "Tony Blair"})
        assert r.status_code == 200
    write_albums(lib)
    assert albums(lib)["Tony Blair"] == union
    page = client.get("/").text
    assert page.count(">Tony Blair</a>") == 1
    assert a in people(client) and b not in people(client)
    assert f"{len(faces)} faces · {len(union)} photos" in _card(page, a)
    r = client.get(f"/person/{b}", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, f"/person/{a}")
    person = client.get(f"/person/{a}").text
    assert f"{len(faces)} faces · {len(union)} photos" in person
    assert _faces_listed(client, a) == faces
    # an edit of the card is an edit of both: rename, hide, show
    client.post("/name", data={**form_tokens(client), "person": str(a), "name": "Tony"})
    assert labels_text(lib).count('"Tony"') == 2
    client.post("/hide", data={**form_tokens(client), "person": str(a), "hidden": "1"})
    assert labels_text(lib).count("hide = true") == 2
    client.post("/hide", data={**form_tokens(client), "person": str(a), "hidden": "0"})
    assert "hide" not in labels_text(lib)
    # "not this person" on the merged page lands in the face's own person's list
    fid = max(_faces_listed(client, b))
    r = client.post("/exclude", data={**form_tokens(client, f"/person/{a}"),
                                      "person": str(a), "entry": f"face-{fid}"})
    assert r.status_code == 200
    assert f'person-{b:04d} = {{name = "Tony", exclude = ["face-{fid}"]}}' in labels_text(lib)


def test_a_best_face_in_a_photo_linked_out_of_the_folders_is_left_out(lib: Path):
    client = client_for(lib)
    pid = people(client)[0]
    best = client.get(f"/person/{pid}/face.jpg").content
    page = client.get(f"/person/{pid}").text
    shown = re.findall(r'data-face="(\d+)".*?title="([^"]+)"', page, re.S)
    path = Path(next(p for f, p in shown if client.get(f"/face/{f}.jpg").content == best))
    outside = lib / "outside"
    outside.mkdir(exist_ok=True)
    kept = outside / path.name
    path.rename(kept)
    path.symlink_to(kept)  # the same picture, now behind a link out of the watched folders
    shutil.rmtree(lib / "state" / "web-cache", ignore_errors=True)
    try:
        montage = client.get(f"/person/{pid}/montage.jpg")
        face = client.get(f"/person/{pid}/face.jpg")
    finally:
        path.unlink()
        kept.rename(path)
    assert montage.status_code == 200 and montage.content[:3] == b"\xff\xd8\xff"
    assert face.status_code == 200 and face.content[:3] == b"\xff\xd8\xff"
    assert face.content != best  # the next best face


# -- refusals ---------------------------------------------------------------------------


def _nothing_written(root: Path) -> None:
    assert not (root / "labels.toml").exists()


def test_posts_without_the_csrf_token_are_refused(lib: Path):
    client = client_for(lib)
    pid = people(client)[0]
    tokens = form_tokens(client)
    for data in ({"digest": tokens["digest"]}, {**tokens, "csrf": "forged"}):
        r = client.post("/name", data={**data, "person": str(pid), "name": "Evil"})
        assert r.status_code == 403
    stranger = TestClient(client.app, base_url=BASE, client=LOCAL)  # no session cookie at all
    r = stranger.post("/name", data={**tokens, "person": str(pid), "name": "Evil"})
    assert r.status_code == 403
    _nothing_written(lib)


def test_ids_that_name_nobody_are_refused_and_nothing_is_written(lib: Path):
    client = client_for(lib)
    pid = people(client)[0]
    fid, _ = _face_of(client, pid)
    nobody = "999999999999"
    for url, data in (("/hide", {"person": nobody, "hidden": "1"}),
                      ("/hide", {"person": nobody, "hidden": "0"}),
                      ("/name", {"person": nobody, "name": "Ghost"}),
                      ("/merge", {"person": [str(pid), "999999999998"], "name": "Ghost"}),
                      ("/exclude", {"person": nobody, "entry": f"face-{fid}"})):
        r = client.post(url, data={**form_tokens(client), **data})
        assert r.status_code == 400 and "there is no person-" in r.text, (url, data)
    _nothing_written(lib)


def test_oversized_and_malformed_requests_are_refused(lib: Path):
    client = client_for(lib)
    pid = people(client)[0]
    tokens = form_tokens(client)
    r = client.post("/name", data={**tokens, "person": str(pid), "name": "x" * 100_000})
    assert r.status_code == 413
    for bad in ({"person": "abc", "name": "A"}, {"person": "1" * 40, "name": "A"},
                {"person": str(pid), "name": ""}, {"person": str(pid), "name": "a\nb"},
                {"person": str(pid), "name": "person-0003"}, {"name": "A"}):
        r = client.post("/name", data={**tokens, **bad})
        assert r.status_code == 400, bad
    r = client.post("/name", data={"csrf": tokens["csrf"], "person": str(pid), "name": "A"})
    assert r.status_code == 400  # no digest
    r = client.post("/name", content=b"\xff\xfe%%%\x00garbage",
                    headers={"content-type": "multipart/form-data; boundary=zz"})
    assert r.status_code in (400, 403)
    r = client.post("/exclude", data={**tokens, "person": str(pid), "entry": "../../etc/passwd"})
    assert r.status_code == 400
    assert client.get("/person/abc").status_code == 404
    assert client.get("/person/99999999999999999999999").status_code == 404
    assert client.get("/?page=-1").status_code in (200, 400)
    _nothing_written(lib)


def test_no_request_reads_outside_the_library(lib: Path):
    client = client_for(lib)
    pid = people(client)[0]
    fid, path = _face_of(client, pid)
    secret = b"top secret"
    urls = ["/../secret.txt", "/%2e%2e/secret.txt", "/static/%2e%2e/%2e%2e/%2e%2e/secret.txt",
            f"/static/{lib}/secret.txt", "/static//etc/passwd", "/photo/..%2fsecret.txt",
            f"/photo/{lib / 'secret.txt'}", "/face/-1.jpg", "/photo/0", "/face/abc.jpg",
            "/albums/.thumbnails/evil.jpg", "/person/1/../../secret.txt"]
    # a symlink planted in the albums' pictures folder leads nowhere: pictures are by id
    (lib / "albums" / ".thumbnails" / "evil.jpg").symlink_to(lib / "secret.txt")
    try:
        for url in urls:
            r = client.get(url)
            assert r.status_code in (404, 400), url
            assert secret not in r.content, url
    finally:
        (lib / "albums" / ".thumbnails" / "evil.jpg").unlink()
    # a photo swapped for a link out of the watched folders is not followed
    shutil.rmtree(lib / "state" / "web-cache", ignore_errors=True)
    original = Path(path)
    kept = original.with_name(original.name + ".bak")
    original.rename(kept)
    original.symlink_to(lib / "secret.txt")
    try:
        for url in (f"/photo/{fid}", f"/face/{fid}.jpg"):
            r = client.get(url)
            assert r.status_code == 404, url
            assert secret not in r.content
    finally:
        original.unlink()
        kept.rename(original)
    _nothing_written(lib)


def test_lan_bind_requires_sign_in(lib: Path):
    set_password(lib / "state", "family photos 2024")
    try:
        clock = [0.0]
        cfg_client = client_for(lib, listen="0.0.0.0")
        cfg_client.app.state.web.limiter = SignInLimiter(per_client=3, clock=lambda: clock[0])
        client = cfg_client
        r = client.get("/", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/signin"
        for url in ("/status", "/person/1", "/face/1.jpg", "/photo/1"):
            assert client.get(url, follow_redirects=False).status_code in (303, 403), url
        page = client.get("/signin").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        r = client.post("/name", data={"csrf": csrf, "person": "1", "name": "Evil"})
        assert r.status_code == 403
        for _ in range(3):
            r = client.post("/signin", data={"csrf": csrf, "password": "wrong password"})
            assert r.status_code == 403
        r = client.post("/signin", data={"csrf": csrf, "password": "family photos 2024"})
        assert r.status_code == 429  # rate-limited even with the right password
        clock[0] += 301
        r = client.post("/signin", data={"csrf": csrf, "password": "family photos 2024"},
                        follow_redirects=False)
        assert r.status_code == 303
        assert client.get("/").status_code == 200
        pid = people(client)[0]
        client.post("/name", data={**form_tokens(client), "person": str(pid), "name": "Signed"})
        assert "Signed" in labels_text(lib)
        (lib / "labels.toml").unlink()
        r = client.post("/signout", data=form_tokens(client))
        assert r.status_code == 200 and "Sign in" in r.text
        r = client.get("/", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/signin"
    finally:
        (lib / "state" / "web-password").unlink()
    _nothing_written(lib)


# -- a real browser -----------------------------------------------------------------------


def _wait_images(browser, timeout: float = 120) -> None:
    """Wait until every image in view has loaded (crops are drawn on first request)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if browser.js("Array.from(document.images).filter(i => i.getBoundingClientRect().top"
                      " < innerHeight).every(i => i.complete)"):
            return
        time.sleep(0.2)


def _save_png(png: bytes, name: str) -> None:
    """Keep a screenshot for README when $FACECLUSTER_SCREENSHOTS names a folder."""
    target = os.environ.get("FACECLUSTER_SCREENSHOTS")
    if target:
        Path(target, name).write_bytes(png)


def test_browser_names_and_merges_people(lib: Path):
    from cdp import Browser, find_chromium

    from daemon.web.server import WebThread

    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no chromium on PATH (apt-get install chromium; .ci/run installs it)")
    cfg = load_config(lib / "config.toml")
    cfg = replace(cfg, web=replace(cfg.web, enabled=True, port=free_port()))
    server = WebThread(cfg)
    server.start()
    url = f"http://127.0.0.1:{cfg.web.port}"
    try:
        with Browser(chromium) as browser:
            for _ in range(100):  # the server thread binds its port shortly
                try:
                    browser.goto(url + "/")
                    break
                except (TimeoutError, RuntimeError):
                    continue
            ids = browser.js("Array.from(document.querySelectorAll('li.person'))"
                             ".map(li => +li.dataset.person)")
            assert len(ids) >= 3
            assert browser.js("document.querySelectorAll('.flag').length") == len(ids)
            _wait_images(browser)
            png = browser.screenshot()
            assert png[:8] == b"\x89PNG\r\n\x1a\n"
            _save_png(png, "web-people.png")
            first, a, b = ids[:3]
            before = albums(lib)

            # name the largest person in their card's form
            browser.js(f"document.querySelector('li[data-person=\"{first}\"] form.name "
                       "input[name=name]').value = 'Barack Obama'")
            landed = browser.submit(f"document.querySelector('li[data-person=\"{first}\"] "
                                    "form.name button')", "done=named")
            assert "done=named" in landed
            assert f'person-{first:04d} = "Barack Obama"' in labels_text(lib)

            # tick two people and merge them under one name
            for pid in (a, b):
                browser.js(f"document.querySelector('input[form=merge][value=\"{pid}\"]')"
                           ".click()")
            browser.js("document.querySelector('#merge input[name=name]').value = 'Pair & co'")
            browser.submit("document.querySelector('#merge button')", "done=merged")
            text = labels_text(lib)
            assert f'person-{a:04d} = "Pair & co"' in text
            assert f'person-{b:04d} = "Pair & co"' in text
            assert "Pair & co" in browser.js("document.body.textContent")

            write_albums(lib)  # the service does this within seconds of the edit
            after = albums(lib)
            assert after["Barack Obama"] == before[f"person-{first:04d}"]
            assert after["Pair & co"] == before[f"person-{a:04d}"] | before[f"person-{b:04d}"]
            for pid in (first, a, b):
                assert f"person-{pid:04d}" not in after

            browser.goto(f"{url}/person/{first}")
            assert "Barack Obama" in browser.js("document.querySelector('h1').textContent")
            _wait_images(browser)
            _save_png(browser.screenshot(), "web-person.png")
    finally:
        server.stop()
