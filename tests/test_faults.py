"""Faults from outside: full disks, a share that goes away, a damaged store.

- Disk full (ENOSPC) while writing albums or the store: logged, nothing corrupted, and
  the next attempt completes the work.
- The watched share unmounted and back: no album is emptied meanwhile.
- The store's files deleted or corrupted: a one-line error naming ``facecluster
  rebuild``, and ``rebuild`` re-derives everything from the photos.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import structlog

from daemon.albums import AlbumPlan, read_manifest, write_albums
from daemon.albums import entries as entries_mod
from daemon.albums import manifest as manifest_mod
from daemon.cli.commands import main
from daemon.config import Config, load_config
from daemon.stages.pipeline import Pipeline
from daemon.store import Store, StoreError
from daemon.store import vectors as vectors_mod

LIBRARY = {
    "obama/small.jpg": "known/obama/obama_small.jpg",
    "obama/240p.jpg": "known/obama/obama-240p.jpg",
    "kit/john1.jpeg": "known/kit_harington/john1.jpeg",
    "kit/john2.jpeg": "known/kit_harington/john2.jpeg",
}


@pytest.fixture(autouse=True)
def _fresh_logging():
    """main() points structlog at this test's captured stderr; don't leave it to the next."""
    yield
    structlog.reset_defaults()


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


# -- album writer, synthetic plans ---------------------------------------------------------


def _plans(tmp: Path, n: int = 6) -> list[AlbumPlan]:
    photos = tmp / "photos"
    photos.mkdir(exist_ok=True)
    paths = []
    for i in range(n):
        p = photos / f"p{i}.jpg"
        p.write_bytes(b"\xff\xd8" + bytes([i]) * 5000 + b"\xff\xd9")
        paths.append(p)
    half = n // 2
    return [
        AlbumPlan("person-0001", (1,), tuple(paths[:half]), ()),
        AlbumPlan("person-0002", (2,), tuple(paths[half:]), ()),
    ]


def _tree(albums: Path) -> dict[str, tuple[str, bytes]]:
    """Visible entries: 'folder/name' -> (kind, link target or bytes)."""
    out = {}
    for folder in sorted(albums.iterdir()):
        if folder.name.startswith("."):
            continue
        for e in sorted(folder.iterdir()):
            if e.is_symlink():
                out[f"{folder.name}/{e.name}"] = ("link", os.readlink(e).encode())
            else:
                out[f"{folder.name}/{e.name}"] = ("file", e.read_bytes())
    return out


def _manifest_matches_disk(albums: Path) -> None:
    manifest = read_manifest(albums)
    for (folder, name), rec in manifest.entries.items():
        st = os.lstat(albums / folder / name)
        assert st.st_ino == rec.ino, f"manifest names a different {folder}/{name}"


@pytest.mark.parametrize("mode", ["symlink", "copy"])
def test_albums_disk_full_then_retry(
    tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    plans = _plans(tmp_path)
    clean = tmp_path / "clean"
    write_albums(clean, plans, mode)
    want = _tree(clean)

    albums = tmp_path / "albums"
    calls = {"n": 0}
    if mode == "symlink":
        real = os.symlink

        def flaky_symlink(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] > 2:
                _enospc()
            return real(*args, **kwargs)

        monkeypatch.setattr(entries_mod.os, "symlink", flaky_symlink)
    else:
        real_copy = shutil.copyfileobj

        def half_copy(src, dst, length=0):
            calls["n"] += 1
            if calls["n"] > 2:
                dst.write(src.read(100))  # some bytes made it before the disk filled
                _enospc()
            return real_copy(src, dst, length)

        monkeypatch.setattr(entries_mod.shutil, "copyfileobj", half_copy)
    with structlog.testing.capture_logs() as logs:
        report = write_albums(albums, plans, mode)
    assert report.no_space and report.errors > 0
    assert any(e["event"] == "albums_out_of_space" for e in logs), "disk full not logged"
    partial = _tree(albums)
    assert len(partial) == 2 and all(want[k] == v for k, v in partial.items()), (
        "an entry written while the disk was full is incomplete"
    )
    hidden = [p for p in albums.rglob(".facecluster-tmp-*")]
    assert not hidden, f"temporary files left after ENOSPC: {hidden}"
    _manifest_matches_disk(albums)

    monkeypatch.undo()
    report = write_albums(albums, plans, mode)
    assert not report.no_space and report.errors == 0
    assert _tree(albums) == want
    _manifest_matches_disk(albums)


def test_albums_disk_full_writing_the_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plans = _plans(tmp_path)
    albums = tmp_path / "albums"
    write_albums(albums, plans[:1], "symlink")
    before = (albums / ".facecluster" / "manifest.json").read_bytes()

    monkeypatch.setattr(manifest_mod, "atomic_write", _enospc)
    with pytest.raises(OSError) as info:
        write_albums(albums, plans, "symlink")
    assert info.value.errno == errno.ENOSPC
    assert (albums / ".facecluster" / "manifest.json").read_bytes() == before, (
        "the manifest must be replaced atomically or not at all"
    )
    monkeypatch.undo()
    report = write_albums(albums, plans, "symlink")
    assert report.errors == 0, "entries made before the failed manifest write were refused"
    assert len(read_manifest(albums).entries) == sum(len(p.photos) for p in plans)
    _manifest_matches_disk(albums)


# -- with the real engine ------------------------------------------------------------------


@pytest.fixture()
def library(tmp_path: Path, shared_photos: Path, yunet_file: Path) -> Path:
    """Four real photos of two people and a config.toml (YuNet + dlib, one worker)."""
    for rel, src in LIBRARY.items():
        (tmp_path / "photos" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(shared_photos / src, tmp_path / "photos" / rel)
    (tmp_path / "config.toml").write_text(
        'watch = ["photos"]\nalbums_dir = "albums"\nstate_dir = "state"\nworkers = 1\n'
        f'[engine]\ndetector = "yunet"\nembedder = "dlib"\nmodels_dir = "{yunet_file.parent}"\n'
    )
    return tmp_path


def _cfg(root: Path) -> Config:
    return load_config(root / "config.toml")


def _albums(albums: Path) -> list[list[str]]:
    """Album contents as sorted lists of original names, independent of folder names."""
    return sorted(
        sorted(Path(os.path.realpath(e)).name for e in d.iterdir())
        for d in albums.iterdir()
        if d.is_dir() and not d.name.startswith(".")
    )


def _scan(root: Path) -> None:
    assert main(["--config", str(root / "config.toml"), "scan"]) == 0


@pytest.mark.slow
def test_store_disk_full_then_retry(library: Path, shared_photos: Path) -> None:
    # A collage: its 24 faces need new database pages, which the "disk" no longer has.
    shutil.copy2(shared_photos / "groups" / "bald_guys.jpg", library / "photos" / "crowd.jpg")
    cfg = _cfg(library)
    photos = sorted((library / "photos").rglob("*.jp*g"))
    with Pipeline(cfg) as pipeline:
        conn = pipeline.store._conn
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        # SQLite's answer to ENOSPC is SQLITE_FULL; a page limit produces exactly that.
        conn.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(StoreError) as info:
            pipeline.index_photos(photos)
        assert "full" in str(info.value)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert pipeline.store.counts().faces == 0, "a half-saved round was kept"
        conn.execute("PRAGMA max_page_count = 1073741823")
        report = pipeline.index_photos(photos)
        assert report.indexed == len(photos) and report.failed == 0
        ids, vecs = pipeline.store.vectors(pipeline.engine_id)
        assert ids.size > 20
        assert np.array_equal(np.asarray(vecs), pipeline.store.face_vectors(ids.tolist()))


@pytest.mark.slow
def test_vector_cache_disk_full_is_repaired(
    library: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _cfg(library)
    photos = sorted((library / "photos").rglob("*.jp*g"))
    with Pipeline(cfg) as pipeline:
        monkeypatch.setattr(vectors_mod, "_append_rows", _enospc)
        with structlog.testing.capture_logs() as logs:
            report = pipeline.index_photos(photos)
        assert report.indexed == len(photos)
        assert any(e["event"] == "vector_cache_append_failed" for e in logs)
        monkeypatch.undo()
        ids, vecs = pipeline.store.vectors(pipeline.engine_id)
        assert ids.size == pipeline.store.counts().faces > 0
        assert np.array_equal(np.asarray(vecs), pipeline.store.face_vectors(ids.tolist()))


@pytest.mark.slow
def test_share_gone_and_back_keeps_albums(library: Path) -> None:
    _scan(library)
    before = _albums(library / "albums")
    assert len(before) == 2
    share, away = library / "photos", library / "unmounted"
    share.rename(away)  # the mount point itself is gone
    cfg = _cfg(library)
    with Pipeline(cfg) as pipeline:
        assert pipeline.sync_missing() == 0
        pipeline.recluster()
        report = pipeline.write_albums()
        assert report.removed == 0
        assert pipeline.store.counts().photos_indexed == len(LIBRARY)
    assert len(_albums(library / "albums")) == 2
    _scan(library)  # a whole scan while the share is gone changes nothing either
    assert sorted(len(a) for a in _albums(library / "albums")) == sorted(len(a) for a in before)
    away.rename(share)
    _scan(library)
    assert _albums(library / "albums") == before


@pytest.mark.slow
def test_share_unmounted_leaving_an_empty_mount_point_keeps_albums(library: Path) -> None:
    _scan(library)
    before = _albums(library / "albums")
    share, away = library / "photos", library / "unmounted"
    share.rename(away)
    share.mkdir()  # what an unmounted NFS/SMB share looks like: an empty folder
    _scan(library)
    assert _albums(library / "albums") == before


def _one_line_rebuild_error(library: Path, capsys: pytest.CaptureFixture) -> None:
    capsys.readouterr()
    code = main(["--config", str(library / "config.toml"), "status"])
    err = capsys.readouterr().err.strip()
    assert code != 0, "status on a broken store must fail"
    assert len(err.splitlines()) == 1 and "facecluster rebuild" in err, err


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_store_then_rebuild(
    library: Path, capsys: pytest.CaptureFixture, damage: str
) -> None:
    _scan(library)
    before = _albums(library / "albums")
    db = library / "state" / "facecluster.sqlite3"
    for wal in library.glob("state/facecluster.sqlite3-*"):
        wal.unlink()
    data = db.read_bytes()
    if damage == "garbage":
        db.write_bytes(np.random.default_rng(1).bytes(len(data)))
    else:
        db.write_bytes(data[: len(data) // 2])
    _one_line_rebuild_error(library, capsys)

    assert main(["--config", str(library / "config.toml"), "rebuild"]) == 0
    assert _albums(library / "albums") == before
    capsys.readouterr()
    assert main(["--config", str(library / "config.toml"), "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["photos"].get("indexed") == len(LIBRARY)
    aside = [p for p in (library / "state").iterdir() if p.name.startswith("broken-")]
    assert len(aside) == 1 and (aside[0] / db.name).exists(), "the broken store was not kept"


@pytest.mark.slow
def test_deleted_store_is_reported(library: Path, capsys: pytest.CaptureFixture) -> None:
    _scan(library)
    for f in (library / "state").glob("facecluster.sqlite3*"):
        f.unlink()
    _one_line_rebuild_error(library, capsys)


@pytest.mark.slow
def test_deleted_store_is_rederived_by_a_scan(library: Path) -> None:
    _scan(library)
    before = _albums(library / "albums")
    for f in (library / "state").glob("facecluster.sqlite3*"):
        f.unlink()
    _scan(library)
    assert _albums(library / "albums") == before
    with Store.open(library / "state") as store:
        assert store.counts().photos_indexed == len(LIBRARY)


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["deleted", "garbage"])
def test_damaged_vector_cache_is_repaired(library: Path, damage: str) -> None:
    _scan(library)
    caches = sorted((library / "state").glob("vectors-*"))
    assert caches, "no vector cache written"
    for f in caches:
        if damage == "deleted":
            f.unlink()
        else:
            f.write_bytes(np.random.default_rng(2).bytes(f.stat().st_size))
    with Store.open(library / "state") as store:
        engine = store.get_meta("engine")
        ids, vecs = store.vectors(engine)
        assert ids.size == store.counts().faces > 0
        assert np.array_equal(np.asarray(vecs), store.face_vectors(ids.tolist()))
    before = _albums(library / "albums")
    _scan(library)
    assert _albums(library / "albums") == before
