"""Photos a browser cannot show, and file names labels.toml cannot hold, on the page.

A small library of one person scanned once (YuNet + dlib): their JPEGs, one of them
re-encoded as a HEIC (as a phone writes it) and one saved under a name with a newline.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from formats import heic_bytes
from starlette.testclient import TestClient
from test_web import LOCAL, albums, form_tokens, labels_text, scan, unlabelled, write_albums

from daemon.config import load_config
from daemon.store import FaceRecord, Store
from daemon.web.app import create_app

pytestmark = pytest.mark.slow

NEWLINE_NAME = "new\nyear.jpg"


@pytest.fixture(scope="module")
def library(tmp_path_factory, shared_photos: Path, yunet_file: Path) -> Path:
    root = tmp_path_factory.mktemp("web-photos")
    photos = root / "photos" / "obama"
    shutil.copytree(shared_photos / "known" / "obama", photos)
    image = cv2.imread(str(photos / "obama.jpg"))
    (photos / "phone.heic").write_bytes(heic_bytes(image))
    (photos / "obama.jpg").unlink()
    again = cv2.imread(str(photos / "obama2.jpg"))
    cv2.imwrite(str(photos / NEWLINE_NAME), again, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return scan(root, yunet_file)


@pytest.fixture()
def lib(library: Path) -> Iterator[Path]:
    yield from unlabelled(library)


def _face_in(root: Path, name: str) -> FaceRecord:
    store = Store.open_readonly(root / "state")
    try:
        return next(f for f in store.faces() if f.path.name == name and f.person_id is not None)
    finally:
        store.close()


def _client(root: Path) -> TestClient:
    return TestClient(create_app(load_config(root / "config.toml")),
                      base_url="http://127.0.0.1", client=LOCAL)


def test_a_heic_photo_is_shown_as_a_jpeg(lib: Path, shared_photos: Path):
    face = _face_in(lib, "phone.heic")
    r = _client(lib).get(f"/photo/{face.id}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    shown = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    original = cv2.imread(str(shared_photos / "known" / "obama" / "obama.jpg"))
    assert shown is not None and shown.shape == original.shape  # whole and upright
    assert np.abs(shown.astype(int) - original.astype(int)).mean() < 12
    jpeg = _face_in(lib, "obama2.jpg")
    r = _client(lib).get(f"/photo/{jpeg.id}")  # a JPEG is sent as it is
    assert r.headers["content-type"] == "image/jpeg"
    assert r.content == (lib / "photos" / "obama" / "obama2.jpg").read_bytes()


def test_not_in_this_photo_works_for_a_file_name_with_a_newline(lib: Path):
    face = _face_in(lib, NEWLINE_NAME)
    client = _client(lib)
    pid = face.person_id
    key = f"person-{pid:04d}"
    assert NEWLINE_NAME in albums(lib)[key]
    r = client.post("/exclude", data={**form_tokens(client, f"/person/{pid}"),
                                      "person": str(pid), "entry": f"photo-{face.id}"})
    assert r.status_code == 200, r.text
    assert f"face-{face.id}" in labels_text(lib)
    write_albums(lib)
    assert NEWLINE_NAME not in albums(lib)[key]
    assert len(albums(lib)[key]) >= 2  # only that photo left the album
