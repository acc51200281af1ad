"""The store: SQLite round trips and the vector cache's repair rules (synthetic data)."""

from __future__ import annotations

import os
import sqlite3
import stat
import tempfile
from pathlib import Path

import numpy as np
import pytest
import structlog
import structlog.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.indexer.types import Face, IndexedPhoto
from daemon.store import PhotoNotFoundError, Store, StoreError
from daemon.store import vectors as vector_cache
from daemon.store.db import DB_NAME, MIGRATIONS

ENGINE = "test-engine+v1"
DIM = 16


def make_indexed(path: Path, n_faces: int, rng: np.random.Generator, engine: str = ENGINE,
                 dim: int = DIM) -> IndexedPhoto:
    faces = []
    for i in range(n_faces):
        v = rng.standard_normal(dim).astype(np.float32)
        faces.append(Face(
            box=(10.0 * i, 20.0, 30.5, 40.25),
            landmarks=tuple((float(i + k), float(k) / 3) for k in range(5)),
            score=0.9 - i / 100,
            embedding=v / np.linalg.norm(v),
        ))
    return IndexedPhoto(path=path, width=640, height=480, engine=engine, faces=tuple(faces))


def blobs(state_dir: Path, engine: str = ENGINE) -> tuple[np.ndarray, np.ndarray]:
    """The truth, read with a separate connection: live ids and embeddings in id order."""
    con = sqlite3.connect(state_dir / DB_NAME)
    try:
        rows = con.execute(
            "SELECT id, embedding FROM faces WHERE engine = ? ORDER BY id", (engine,)
        ).fetchall()
    finally:
        con.close()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    if not rows:
        return ids, np.empty((0, 0), dtype=np.float32)
    return ids, np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])


def assert_vectors_match(store: Store, engine: str = ENGINE) -> tuple[np.ndarray, np.ndarray]:
    ids, vecs = store.vectors(engine)
    want_ids, want_vecs = blobs(store.state_dir, engine)
    np.testing.assert_array_equal(ids, want_ids)
    assert vecs.dtype == np.float32
    if want_ids.size:
        np.testing.assert_array_equal(vecs, want_vecs)
    return ids, vecs


def cache_rows(state_dir: Path, engine: str = ENGINE) -> int:
    p = vector_cache.cache_paths(state_dir, engine).ids
    return (p.stat().st_size - vector_cache.HEADER_SIZE) // 8 if p.exists() else 0


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


@pytest.fixture()
def store(tmp_path: Path):
    with Store.open(tmp_path / "state") as s:
        yield s


def fill(store: Store, rng: np.random.Generator, photos: int, faces: int = 3,
         root: Path = Path("/photos")) -> dict[Path, list[int]]:
    out = {}
    for i in range(photos):
        p = root / f"img{i:04d}.jpg"
        indexed = make_indexed(p, faces, rng)
        out[p] = store.save_indexed(p, 1000 + i, 10**18 + i, f"hash{i}", indexed)
    return out


# -- opening ---------------------------------------------------------------------------


def test_open_creates_private_state_dir_in_wal_mode(tmp_path: Path) -> None:
    state = tmp_path / "a" / "state"
    with Store.open(state):
        pass
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    con = sqlite3.connect(state / DB_NAME)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("PRAGMA user_version").fetchone()[0] >= 1
    con.close()


def test_corrupt_database_raises_store_error_naming_file_and_rebuild(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / DB_NAME).write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError) as e:
        Store.open(state)
    assert DB_NAME in str(e.value)
    assert "facecluster rebuild" in str(e.value)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Store.open(state):
        pass
    con = sqlite3.connect(state / DB_NAME)
    con.execute("PRAGMA user_version = 99")
    con.close()
    with pytest.raises(StoreError, match="newer"):
        Store.open(state)


def test_a_new_store_is_not_news(tmp_path: Path) -> None:
    """Issue 21 item 25: the first run logged store_migrated version=1/2 at info."""
    with structlog.testing.capture_logs() as logs, Store.open(tmp_path / "state"):
        pass
    migrated = [e for e in logs if e["event"] == "store_migrated"]
    assert len(migrated) == len(MIGRATIONS)
    assert {e["log_level"] for e in migrated} == {"debug"}


def test_store_of_schema_1_is_read_then_migrated_keeping_its_data(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    # A store written before schema 2 (the web page's index) and 3 (the face crops) is
    # exactly schema 1's tables.
    state = tmp_path / "state"
    with Store.open(state) as s:
        saved = fill(s, rng, 3)
        pid = s.new_person_id()
        s.set_persons({saved[Path("/photos/img0001.jpg")][0]: pid})
    con = sqlite3.connect(state / DB_NAME)
    con.execute("DROP INDEX faces_person_photo")
    con.execute("DROP TABLE face_crops")
    con.execute("PRAGMA user_version = 1")
    con.close()

    with Store.open_readonly(state) as ro:  # a reader beside an old writer: no migration
        first = saved[Path("/photos/img0001.jpg")][0]
        assert ro.person_faces(pid)[0].id == first
        assert ro.face_crops([first]) == {}  # no crops yet: the readers decode the photo
    con = sqlite3.connect(state / DB_NAME)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 1
    con.close()

    with structlog.testing.capture_logs() as logs, Store.open(state) as s:
        assert s.counts().faces == 9
        assert [f.id for f in s.person_faces(pid)] == [saved[Path("/photos/img0001.jpg")][0]]
    # An old store's upgrade is news (info); a new store's schema steps are not (debug).
    steps = [e["log_level"] for e in logs if e["event"] == "store_migrated"]
    assert steps == ["info"] * (len(MIGRATIONS) - 1)  # 1 -> 2 -> 3
    con = sqlite3.connect(state / DB_NAME)
    assert con.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    indexes = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"faces_person", "faces_person_photo"} <= indexes
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "face_crops" in tables
    con.close()


def test_reopen_keeps_everything(tmp_path: Path, rng: np.random.Generator) -> None:
    state = tmp_path / "state"
    with Store.open(state) as s:
        saved = fill(s, rng, 4)
        pid = s.new_person_id()
        s.set_persons({saved[Path("/photos/img0000.jpg")][0]: pid})
        s.set_meta("labels_hash", "abc")
        before = s.vectors(ENGINE)
        before = (before[0].copy(), np.array(before[1]))
    with Store.open(state) as s:
        assert s.get_meta("labels_hash") == "abc"
        assert s.get_meta("missing", "dflt") == "dflt"
        ids, vecs = assert_vectors_match(s)
        np.testing.assert_array_equal(ids, before[0])
        np.testing.assert_array_equal(vecs, before[1])
        assert [f.id for f in s.faces(person_id=pid)] == [saved[Path("/photos/img0000.jpg")][0]]
        assert s.counts().photos_indexed == 4


# -- photos ----------------------------------------------------------------------------


def test_save_indexed_round_trip(store: Store, rng: np.random.Generator) -> None:
    p = Path("/photos/a.jpg")
    indexed = make_indexed(p, 2, rng)
    ids = store.save_indexed(p, 123, 456, "h1", indexed)
    assert len(ids) == 2 and ids[0] < ids[1]
    rec = store.photo(p)
    assert rec is not None
    assert (rec.path, rec.size, rec.mtime_ns, rec.content_hash, rec.status) == (
        p, 123, 456, "h1", "indexed")
    assert (rec.width, rec.height, rec.engine, rec.face_count) == (640, 480, ENGINE, 2)
    faces = store.faces(ids)
    assert [f.id for f in faces] == ids
    for f, src in zip(faces, indexed.faces, strict=True):
        assert f.box == src.box and f.landmarks == src.landmarks and f.score == src.score
        assert f.path == p and f.photo_id == rec.id and f.person_id is None
    np.testing.assert_array_equal(store.face_vectors(ids), [f.embedding for f in indexed.faces])
    assert store.photo("/photos/other.jpg") is None


def test_reindex_replaces_faces_with_new_ids(store: Store, rng: np.random.Generator) -> None:
    p = Path("/photos/a.jpg")
    first = store.save_indexed(p, 1, 1, "h1", make_indexed(p, 3, rng))
    second = store.save_indexed(p, 2, 2, "h2", make_indexed(p, 1, rng))
    assert min(second) > max(first)
    assert [f.id for f in store.faces(engine=ENGINE)] == second
    assert store.photo(p).face_count == 1
    assert_vectors_match(store)


def test_save_failed_counts_attempts_and_drops_faces(
    store: Store, rng: np.random.Generator
) -> None:
    p = Path("/photos/a.jpg")
    store.save_indexed(p, 1, 1, "h", make_indexed(p, 2, rng))
    store.save_failed(p, 2, 2, None, "truncated JPEG", transient=True)
    store.save_failed(p, 3, 3, "h3", "not an image", transient=False)
    rec = store.photo(p)
    assert (rec.status, rec.error, rec.transient, rec.attempts) == (
        "failed", "not an image", False, 2)
    assert rec.face_count == 0 and store.faces() == []
    store.save_indexed(p, 4, 4, "h4", make_indexed(p, 1, rng))
    rec = store.photo(p)
    assert (rec.status, rec.error, rec.attempts) == ("indexed", None, 0)
    counts = store.counts()
    assert (counts.photos_indexed, counts.photos_failed, counts.faces) == (1, 0, 1)


def test_move_keeps_face_and_person_ids(store: Store, rng: np.random.Generator) -> None:
    old, new = Path("/photos/a.jpg"), Path("/photos/sub/b.jpg")
    ids = store.save_indexed(old, 1, 1, "h", make_indexed(old, 2, rng))
    pid = store.new_person_id()
    store.set_persons({ids[0]: pid})
    photo_id = store.photo(old).id
    store.move_photo(old, new, 1, 5)
    assert store.photo(old) is None
    rec = store.photo(new)
    assert rec.id == photo_id and rec.mtime_ns == 5
    faces = store.faces(ids)
    assert [f.id for f in faces] == ids
    assert [f.path for f in faces] == [new, new]
    assert [f.person_id for f in faces] == [pid, None]
    with pytest.raises(PhotoNotFoundError):
        store.move_photo(old, new, 1, 1)


def test_move_over_existing_photo_replaces_it(store: Store, rng: np.random.Generator) -> None:
    a, b = Path("/photos/a.jpg"), Path("/photos/b.jpg")
    ids_a = store.save_indexed(a, 1, 1, "ha", make_indexed(a, 1, rng))
    store.save_indexed(b, 1, 1, "hb", make_indexed(b, 2, rng))
    store.move_photo(a, b, 1, 1)
    assert [f.id for f in store.faces()] == ids_a
    assert_vectors_match(store)


def test_copy_gets_new_ids_same_embeddings_and_persons(
    store: Store, rng: np.random.Generator
) -> None:
    src, dup = Path("/photos/a.jpg"), Path("/backup/a.jpg")
    ids = store.save_indexed(src, 9, 9, "same", make_indexed(src, 2, rng))
    pid = store.new_person_id()
    store.set_persons({ids[1]: pid})
    new_ids = store.copy_photo(src, dup, 9, 10)
    assert len(new_ids) == 2 and not set(new_ids) & set(ids)
    assert [f.person_id for f in store.faces(new_ids)] == [None, pid]
    assert [f.box for f in store.faces(new_ids)] == [f.box for f in store.faces(ids)]
    np.testing.assert_array_equal(store.face_vectors(new_ids), store.face_vectors(ids))
    assert {r.path for r in store.photos_with_hash("same")} == {src, dup}
    assert store.photo(dup).id != store.photo(src).id
    ids_all, _ = assert_vectors_match(store)
    assert set(ids_all) == set(ids) | set(new_ids)
    with pytest.raises(PhotoNotFoundError):
        store.copy_photo("/photos/nope.jpg", "/x.jpg", 1, 1)


def test_delete_cascades_to_faces(store: Store, rng: np.random.Generator) -> None:
    saved = fill(store, rng, 3, faces=2)
    gone = Path("/photos/img0001.jpg")
    assert store.delete_photo(gone) == 2
    assert store.photo(gone) is None
    assert not set(store.faces(saved[gone]))
    assert store.delete_photo(gone) == 0
    assert store.counts().faces == 4
    ids, _ = assert_vectors_match(store)
    assert not set(ids) & set(saved[gone])


def test_iter_photos_pages_through_all(store: Store, rng: np.random.Generator) -> None:
    fill(store, rng, 7, faces=1)
    store.save_failed("/photos/bad.jpg", 1, 1, None, "broken", transient=False)
    recs = list(store.iter_photos(page=3))
    assert len(recs) == 8
    assert [r.id for r in recs] == sorted(r.id for r in recs)
    assert {r.status for r in recs} == {"indexed", "failed"}


def test_non_utf8_file_names_round_trip(store: Store, rng: np.random.Generator,
                                        tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + b"/caf\xe9-\xff\xfe.jpg"
    p = Path(os.fsdecode(raw))
    ids = store.save_indexed(p, 1, 1, "h", make_indexed(p, 1, rng))
    rec = store.photo(p)
    assert rec is not None and os.fsencode(rec.path) == raw
    assert os.fsencode(next(store.iter_photos()).path) == raw
    assert os.fsencode(store.faces(ids)[0].path) == raw
    moved = Path(os.fsdecode(raw + b".\x80"))
    store.move_photo(p, moved, 1, 1)
    assert os.fsencode(store.photo(moved).path) == raw + b".\x80"


def test_relative_paths_are_stored_absolute(store: Store, rng: np.random.Generator) -> None:
    p = Path("rel/a.jpg")
    store.save_indexed(p, 1, 1, "h", make_indexed(p, 0, rng))
    rec = store.photo(Path.cwd() / "rel" / "a.jpg")
    assert rec is not None and rec.path.is_absolute()


def test_dimension_mismatch_is_refused(store: Store, rng: np.random.Generator) -> None:
    store.save_indexed("/p/a.jpg", 1, 1, "h", make_indexed(Path("/p/a.jpg"), 1, rng))
    with pytest.raises(StoreError, match="16-d"):
        store.save_indexed("/p/b.jpg", 1, 1, "h", make_indexed(Path("/p/b.jpg"), 1, rng, dim=8))
    assert store.photo("/p/b.jpg") is None


# -- batches ---------------------------------------------------------------------------


def test_batch_rolls_back_everything_on_error(store: Store, rng: np.random.Generator) -> None:
    fill(store, rng, 1)
    with pytest.raises(RuntimeError), store.batch():
        fill(store, rng, 3, root=Path("/more"))
        raise RuntimeError("boom")
    assert store.counts().photos_indexed == 1
    assert cache_rows(store.state_dir) == 3  # nothing of the rolled-back batch was appended
    assert_vectors_match(store)


def test_failed_call_inside_batch_leaves_no_half_change(
    store: Store, rng: np.random.Generator
) -> None:
    with store.batch():
        fill(store, rng, 2)
        with pytest.raises(StoreError):  # faces were deleted before the dimension check
            store.save_indexed("/photos/img0000.jpg", 1, 1, "h",
                               make_indexed(Path("/x"), 1, rng, dim=4))
    assert store.photo("/photos/img0000.jpg").face_count == 3
    assert_vectors_match(store)


def test_vectors_inside_batch_include_uncommitted_faces(
    store: Store, rng: np.random.Generator
) -> None:
    fill(store, rng, 2)
    store.vectors(ENGINE)
    with store.batch():
        new = fill(store, rng, 2, root=Path("/new"))
        ids, vecs = store.vectors(ENGINE)
        assert set(np.concatenate(list(new.values()))) <= set(ids)
        np.testing.assert_array_equal(vecs, blobs_in(store, ids))
        assert cache_rows(store.state_dir) == 6  # not appended before the commit
    assert cache_rows(store.state_dir) == 12
    assert_vectors_match(store)


def blobs_in(store: Store, ids: np.ndarray) -> np.ndarray:
    return store.face_vectors([int(i) for i in ids])


# -- the vector cache -------------------------------------------------------------------


def test_cache_is_appended_after_commits_and_mapped(store: Store, rng: np.random.Generator) -> None:
    fill(store, rng, 5)
    assert cache_rows(store.state_dir) == 15
    ids, vecs = assert_vectors_match(store)
    assert not vecs.flags.writeable and vecs.flags.c_contiguous


def test_deleted_cache_is_rebuilt(store: Store, rng: np.random.Generator) -> None:
    fill(store, rng, 5)
    paths = vector_cache.cache_paths(store.state_dir, ENGINE)
    paths.vecs.unlink()
    paths.ids.unlink()
    assert_vectors_match(store)
    assert cache_rows(store.state_dir) == 15


def test_cache_truncated_mid_record_is_repaired(store: Store, rng: np.random.Generator) -> None:
    fill(store, rng, 5)
    paths = vector_cache.cache_paths(store.state_dir, ENGINE)
    size = paths.vecs.stat().st_size
    os.truncate(paths.vecs, size - 4 * DIM - 5)  # last row lost, the one before cut
    assert_vectors_match(store)
    assert (paths.vecs.stat().st_size - vector_cache.HEADER_SIZE) % (4 * DIM) == 0


def test_ids_file_longer_than_vectors_is_cut(store: Store, rng: np.random.Generator) -> None:
    fill(store, rng, 2)
    paths = vector_cache.cache_paths(store.state_dir, ENGINE)
    with open(paths.ids, "ab") as f:
        f.write(np.array([999, 1000], dtype="<i8").tobytes() + b"\x01\x02")
    assert_vectors_match(store)


def test_orphan_rows_are_ignored_and_their_ids_never_reused(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    state = tmp_path / "state"
    with Store.open(state) as s:
        fill(s, rng, 2)
        top = int(s.vectors(ENGINE)[0].max())
        # A crash after appending but before the commit: rows whose ids SQLite never kept.
        orphans = np.arange(top + 1, top + 4, dtype=np.int64)
        vector_cache.append(state, ENGINE, orphans, np.ones((3, DIM), dtype=np.float32))
        assert_vectors_match(s)
    with Store.open(state) as s:
        new = s.save_indexed("/photos/n.jpg", 1, 1, "h", make_indexed(Path("/n"), 2, rng))
        assert min(new) > orphans.max()
        assert_vectors_match(s)


def test_duplicate_rows_last_one_wins(store: Store, rng: np.random.Generator) -> None:
    saved = fill(store, rng, 2)
    some = np.array(saved[Path("/photos/img0000.jpg")], dtype=np.int64)
    # Stale rows first, then the right ones appended again (a repair racing an append).
    vector_cache.append(store.state_dir, ENGINE, some, store.face_vectors(some.tolist()))
    assert_vectors_match(store)


def test_corrupt_cache_header_is_rebuilt(store: Store, rng: np.random.Generator) -> None:
    fill(store, rng, 3)
    paths = vector_cache.cache_paths(store.state_dir, ENGINE)
    with open(paths.vecs, "r+b") as f:
        f.write(b"garbage!")
    assert_vectors_match(store)


def test_wrong_vector_in_cache_is_caught_by_spot_check(
    store: Store, rng: np.random.Generator
) -> None:
    fill(store, rng, 3)
    paths = vector_cache.cache_paths(store.state_dir, ENGINE)
    with open(paths.vecs, "r+b") as f:  # silently damage the newest row
        f.seek(-4 * DIM, os.SEEK_END)
        f.write(np.full(DIM, 7.0, dtype=np.float32).tobytes())
    assert_vectors_match(store)


def test_files_of_different_generations_are_not_mixed(
    store: Store, rng: np.random.Generator
) -> None:
    fill(store, rng, 3)
    paths = vector_cache.cache_paths(store.state_dir, ENGINE)
    old_ids = paths.ids.read_bytes()
    paths.vecs.unlink()
    paths.ids.unlink()
    store.vectors(ENGINE)  # rebuilt: a new pair with a new nonce
    paths.ids.write_bytes(old_ids)  # as if a crash hit between the two renames
    assert_vectors_match(store)


def test_deleted_faces_compact_the_cache(store: Store, rng: np.random.Generator) -> None:
    saved = fill(store, rng, 10)
    store.vectors(ENGINE)
    paths = list(saved)
    store.delete_photo(paths[0])  # 10% dead: kept, served by gathering live rows
    _, gathered = assert_vectors_match(store)
    assert not gathered.flags.writeable
    assert cache_rows(store.state_dir) == 30
    for p in paths[1:5]:  # 50% dead: rewritten
        store.delete_photo(p)
    ids, vecs = assert_vectors_match(store)
    assert cache_rows(store.state_dir) == 15
    assert not vecs.flags.writeable
    assert isinstance(vecs.base, np.memmap)  # after compaction the result is the map again


def test_all_faces_deleted_gives_empty_vectors(store: Store, rng: np.random.Generator) -> None:
    assert store.vectors(ENGINE)[1].shape == (0, 0)
    saved = fill(store, rng, 2)
    store.vectors(ENGINE)
    for p in saved:
        store.delete_photo(p)
    ids, vecs = store.vectors(ENGINE)
    assert ids.shape == (0,) and vecs.shape == (0, DIM)


def test_engines_have_separate_caches(store: Store, rng: np.random.Generator) -> None:
    other = "other/engine"
    store.save_indexed("/a.jpg", 1, 1, "h", make_indexed(Path("/a"), 2, rng))
    store.save_indexed("/b.jpg", 1, 1, "h", make_indexed(Path("/b"), 3, rng, engine=other, dim=8))
    assert assert_vectors_match(store)[1].shape == (2, DIM)
    assert assert_vectors_match(store, other)[1].shape == (3, 8)
    assert store.counts().faces_by_engine == {ENGINE: 2, other: 3}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(
    ["save", "save", "delete", "move", "copy", "vectors", "cut", "unlink", "orphan"]),
    st.integers(0, 5), st.integers(0, 3)), max_size=25))
def test_vectors_always_equal_blobs(ops: list[tuple[str, int, int]]) -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d, Store.open(Path(d) / "state") as s:
        paths = vector_cache.cache_paths(s.state_dir, ENGINE)
        for op, a, b in ops:
            pa, pb = Path(f"/p/{a}.jpg"), Path(f"/p/{b}.jpg")
            if op == "save":
                s.save_indexed(pa, 1, 1, "h", make_indexed(pa, b, rng))
            elif op == "delete":
                s.delete_photo(pa)
            elif op in ("move", "copy") and s.photo(pa) and pa != pb:
                getattr(s, f"{op}_photo")(pa, pb, 1, 1)
            elif op == "vectors":
                assert_vectors_match(s)
            elif op == "cut" and paths.vecs.exists():
                os.truncate(paths.vecs, max(0, paths.vecs.stat().st_size - 1 - 9 * b))
            elif op == "unlink":
                paths.ids.unlink(missing_ok=True)
            elif op == "orphan":
                # What a crash leaves: rows appended for ids the lost commit had taken,
                # so above every id handed out so far (a live face never shares one).
                top = max([vector_cache.max_cached_id(s.state_dir)]
                          + [f.id for f in s.faces()])
                vector_cache.append(s.state_dir, ENGINE, np.array([top + 1 + a]),
                                    rng.standard_normal((1, DIM)).astype(np.float32))
        assert_vectors_match(s)


# -- people ----------------------------------------------------------------------------


def test_person_ids_never_reused_after_retire(tmp_path: Path, rng: np.random.Generator) -> None:
    state = tmp_path / "state"
    with Store.open(state) as s:
        ids = fill(s, rng, 2)
        faces = [f for v in ids.values() for f in v]
        p1, p2 = s.new_person_id(), s.new_person_id()
        s.set_persons({faces[0]: p1, faces[1]: p1, faces[3]: p2})
        s.set_persons({faces[3]: p1})
        s.retire_people([p2])
        people = {p.id: p for p in s.people()}
        assert people[p1].face_count == 3 and people[p1].photo_count == 2
        assert people[p2].retired and people[p2].face_count == 0
        assert s.counts().people == 1
    with Store.open(state) as s:
        p3 = s.new_person_id()
        assert p3 > p2
        s.set_persons({faces[0]: None})
        assert [f.id for f in s.faces(person_id=p1)] == [faces[1], faces[3]]


def test_unknown_person_is_refused_atomically(store: Store, rng: np.random.Generator) -> None:
    faces = fill(store, rng, 1)[Path("/photos/img0000.jpg")]
    pid = store.new_person_id()
    with pytest.raises(StoreError):
        store.set_persons({faces[0]: pid, faces[1]: pid + 100})
    assert all(f.person_id is None for f in store.faces())


def test_meta_values_must_be_strings(store: Store) -> None:
    with pytest.raises(TypeError):
        store.set_meta("k", 3)  # type: ignore[arg-type]


def test_garbage_cache_file_does_not_move_the_id_counter(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "vectors-junk.ids").write_bytes(b"\xff" * 1024)
    with Store.open(state) as s:
        ids = s.save_indexed("/a.jpg", 1, 1, "h", make_indexed(Path("/a"), 1, rng))
        assert ids == [1]
        assert_vectors_match(s)


def test_face_persons_lists_assigned_faces_of_one_engine(
    store: Store, rng: np.random.Generator
) -> None:
    ids = [i for group in fill(store, rng, photos=2).values() for i in group]
    other = store.save_indexed(
        Path("/photos/other.jpg"), 1, 1, "h-other", make_indexed(
            Path("/photos/other.jpg"), 1, rng, engine="other-engine+v1")
    )
    a, b = store.new_person_id(), store.new_person_id()
    store.set_persons({ids[0]: a, ids[1]: a, ids[2]: b, other[0]: b})
    assert store.face_persons(ENGINE) == {ids[0]: a, ids[1]: a, ids[2]: b}
    assert store.face_persons("other-engine+v1") == {other[0]: b}
    assert store.face_persons(ENGINE) == {
        f.id: f.person_id for f in store.faces(engine=ENGINE) if f.person_id is not None
    }
