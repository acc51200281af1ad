"""The face crop store: crops saved with their faces, kept across restarts, copied with
a copied photo, and dropped with their faces however those go."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from daemon.indexer.types import IndexedPhoto
from daemon.store import Store
from daemon.store.db import DB_NAME
from tests.test_store import make_indexed


def with_crops(indexed: IndexedPhoto, tag: bytes) -> IndexedPhoto:
    faces = tuple(replace(f, crop=tag + bytes([i]) if i != 1 else b"")
                  for i, f in enumerate(indexed.faces))
    return replace(indexed, faces=faces)


def crop_rows(state: Path) -> int:
    con = sqlite3.connect(state / DB_NAME)
    try:
        return con.execute("SELECT COUNT(*) FROM face_crops").fetchone()[0]
    finally:
        con.close()


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(3)


def test_crops_are_saved_with_their_faces_and_survive_a_restart(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    state = tmp_path / "state"
    photo = Path("/photos/a.jpg")
    with Store.open(state) as s:
        ids = s.save_indexed(photo, 1, 1, "h", with_crops(make_indexed(photo, 3, rng), b"A"))
    with Store.open(state) as s:
        got = s.face_crops(ids)
    # The second face had no crop (none could be cut): it has none, the others theirs.
    assert got == {ids[0]: b"A\x00", ids[2]: b"A\x02"}
    with Store.open_readonly(state) as ro:
        assert ro.face_crops([ids[2], 10**9]) == {ids[2]: b"A\x02"}


def test_crops_go_with_their_faces(tmp_path: Path, rng: np.random.Generator) -> None:
    state = tmp_path / "state"
    a, b, c = Path("/photos/a.jpg"), Path("/photos/b.jpg"), Path("/photos/c.jpg")
    with Store.open(state) as s:
        first = s.save_indexed(a, 1, 1, "ha", with_crops(make_indexed(a, 3, rng), b"A"))
        s.save_indexed(b, 1, 1, "hb", with_crops(make_indexed(b, 3, rng), b"B"))
        s.save_indexed(c, 1, 1, "hc", with_crops(make_indexed(c, 3, rng), b"C"))
        assert crop_rows(state) == 6
        again = s.save_indexed(a, 2, 2, "ha2", with_crops(make_indexed(a, 3, rng), b"N"))
        assert s.face_crops(first) == {}  # re-indexed: the old faces' crops went
        assert s.face_crops(again)[again[0]] == b"N\x00"
        s.save_failed(b, 3, 3, "hb2", "broken now", False)
        s.delete_photo(c)
        assert crop_rows(state) == 2  # only a's new faces are left


def test_a_copied_photo_gets_the_crops_of_its_source(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    src, dst = Path("/photos/a.jpg"), Path("/photos/copy/a.jpg")
    with Store.open(tmp_path / "state") as s:
        ids = s.save_indexed(src, 1, 1, "h", with_crops(make_indexed(src, 3, rng), b"S"))
        new = s.copy_photo(src, dst, 1, 2)
        got = s.face_crops(new)
        assert got == {new[0]: b"S\x00", new[2]: b"S\x02"}
        s.delete_photo(src)
        assert s.face_crops(ids) == {} and s.face_crops(new) == got
