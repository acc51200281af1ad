"""kill -9 during indexing, re-clustering and album writing, then recovery.

``facecluster scan`` runs as a subprocess on a small real library (YuNet + dlib, one
worker, copy mode, the most crash-prone album mode). Between runs photos leave and
rejoin the watched folder, so every run has indexing, clustering and album work to do.
Each run is killed at a random moment: after a random delay, or a random instant after
a log event that marks the phase to hit. After every kill the store must be consistent
and the album tree must hold only complete entries; after a final undisturbed scan the
store and albums must equal those of a clean scan of the same library.
"""

from __future__ import annotations

import hashlib
import os
import random
import select
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from daemon.albums import AlbumPlan, read_manifest, write_albums
from daemon.albums import writer as writer_mod
from daemon.store import Store

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
LIBRARY = {
    "a/obama_small.jpg": "known/obama/obama_small.jpg",
    "a/obama-240p.jpg": "known/obama/obama-240p.jpg",
    "a/obama-480p.jpg": "known/obama/obama-480p.jpg",
    "a/obama2.jpg": "known/obama/obama2.jpg",
    "b/biden2.jpg": "known/biden/biden2.jpg",
    "b/john1.jpeg": "known/kit_harington/john1.jpeg",
    "b/john2.jpeg": "known/kit_harington/john2.jpeg",
    "b/rose1.jpg": "known/rose_leslie/img1.jpg",
    "b/rose2.jpg": "known/rose_leslie/img2.jpg",
    "group.jpg": "groups/obama_and_biden.jpg",
    "cat.jpg": "no-faces/cat.jpg",
}
MIN_KILLS = 20
MAX_RUNS = 60
RUN_TIMEOUT = 120.0
# How a run is cut short: a plain delay, or a random instant after a phase's log event.
STRATEGIES = (
    ("delay", None, (0.2, 2.5)),
    ("indexing", "photo_indexed", (0.0, 0.6)),
    ("clustering", "index_built", (0.0, 0.03)),
    ("albums", "reclustered", (0.0, 0.5)),
)


def _config(root: Path, models: Path) -> Path:
    cfg = root / "config.toml"
    cfg.write_text(
        'watch = ["photos"]\nalbums_dir = "albums"\nstate_dir = "state"\n'
        'workers = 1\nalbum_mode = "copy"\nlog_level = "debug"\n'
        f'[engine]\ndetector = "yunet"\nembedder = "dlib"\nmodels_dir = "{models}"\n'
    )
    return cfg


def _scan_cmd(cfg: Path) -> list[str]:
    return [sys.executable, "-m", "daemon", "--config", str(cfg), "scan"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@dataclass
class RunResult:
    killed: bool
    phase: str
    returncode: int | None


def _run_and_kill(cfg: Path, strategy: tuple, rng: random.Random) -> RunResult:
    """Start a scan; kill -9 it per ``strategy`` unless it finishes first."""
    name, event, (lo, hi) = strategy
    proc = subprocess.Popen(
        _scan_cmd(cfg), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(), cwd=REPO
    )
    started = time.monotonic()
    kill_at = started + rng.uniform(lo, hi) if event is None else None
    buffer = b""
    try:
        while proc.poll() is None:
            now = time.monotonic()
            if now - started > RUN_TIMEOUT:
                proc.kill()
                raise AssertionError(f"scan still running after {RUN_TIMEOUT} s")
            if kill_at is not None and now >= kill_at:
                proc.kill()
                proc.wait()
                return RunResult(True, name, proc.returncode)
            wait = 0.05 if kill_at is None else max(0.0, min(0.05, kill_at - now))
            ready, _, _ = select.select([proc.stderr], [], [], wait)
            if not ready:
                continue
            chunk = os.read(proc.stderr.fileno(), 65536)
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if kill_at is None and event is not None and f'"{event}"'.encode() in line:
                    kill_at = time.monotonic() + rng.uniform(lo, hi)
        return RunResult(False, name, proc.returncode)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stderr.close()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_store(state: Path, live_photos: dict[str, str]) -> None:
    """The store after a crash: intact SQLite, no orphans or duplicates, caches agree."""
    db = state / "facecluster.sqlite3"
    if not db.exists():
        return  # killed before the store was created
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        if "faces" not in tables:
            # Killed between creating the file and committing its schema: SQLite rolled
            # the schema back, and the next open creates it (the next runs check that).
            assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
            return
        orphans = conn.execute(
            "SELECT COUNT(*) FROM faces WHERE photo_id NOT IN (SELECT id FROM photos)"
        ).fetchone()[0]
        assert orphans == 0, f"{orphans} faces without a photo"
        dup = conn.execute(
            "SELECT photo_id, x, y, w, h, COUNT(*) FROM faces "
            "GROUP BY photo_id, x, y, w, h HAVING COUNT(*) > 1"
        ).fetchall()
        assert not dup, f"faces stored twice: {dup}"
        bad_person = conn.execute(
            "SELECT COUNT(*) FROM faces WHERE person_id IS NOT NULL "
            "AND person_id NOT IN (SELECT id FROM people)"
        ).fetchone()[0]
        assert bad_person == 0
        bad_status = conn.execute(
            "SELECT COUNT(*) FROM photos WHERE status = 'indexed' AND engine IS NULL"
        ).fetchone()[0]
        assert bad_status == 0
    with Store.open(state) as store:
        for engine in {f.engine for f in store.faces()}:
            ids, vecs = store.vectors(engine)
            want = [f.id for f in store.faces(engine=engine)]
            assert ids.tolist() == want, "vector cache ids differ from SQLite's faces"
            assert np.array_equal(np.asarray(vecs), store.face_vectors(want)), (
                "vector cache rows differ from the SQLite embeddings"
            )
        for rec in store.iter_photos():
            if rec.status == "indexed" and rec.content_hash is not None:
                # A photo's record is the one of the bytes it was indexed from.
                rel = os.path.relpath(rec.path, state.parent / "photos")
                if rel in live_photos:
                    assert rec.content_hash == live_photos[rel], f"{rel}: stale hash"


def _check_albums(albums: Path, hashes: set[str]) -> None:
    """Every visible album entry is a complete copy of some original."""
    if not albums.exists():
        return
    for folder in albums.iterdir():
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if entry.name.startswith("."):
                continue
            assert _sha(entry) in hashes, f"{entry} is not a complete copy of an original"


def _store_view(state: Path, photos: Path) -> dict:
    """Store contents independent of ids: photos, their faces, and how faces group."""
    with Store.open(state) as store:
        recs = {os.path.relpath(r.path, photos): (r.status, r.face_count, r.content_hash)
                for r in store.iter_photos()}
        faces = store.faces()
    by_person: dict[int | None, set] = {}
    for f in faces:
        key = (os.path.relpath(f.path, photos), tuple(round(v) for v in f.box))
        by_person.setdefault(f.person_id, set()).add(key)
    noise = frozenset(by_person.pop(None, set()))
    return {
        "photos": recs,
        "faces": sorted((os.path.relpath(f.path, photos), tuple(round(v) for v in f.box))
                        for f in faces),
        "people": sorted(sorted(members) for members in by_person.values()),
        "noise": sorted(noise),
    }


def _album_view(albums: Path) -> dict:
    """Album tree independent of person ids: each album's entries and their bytes."""
    groups = []
    hidden = []
    for folder in sorted(albums.iterdir()):
        if folder.name.startswith("."):
            hidden += [p.name for p in folder.iterdir() if p.name.startswith(".facecluster-tmp")]
            continue
        groups.append(sorted((e.name, _sha(e)) for e in folder.iterdir()))
        hidden += [e.name for e in folder.iterdir() if e.name.startswith(".")]
    thumbs = sorted(p.name.split(".", 1)[-1] for p in (albums / ".thumbnails").iterdir())
    return {"albums": sorted(groups), "leftovers": hidden, "thumbnail_kinds": Counter(thumbs)}


@pytest.fixture(scope="module")
def crashed_and_clean(
    tmp_path_factory: pytest.TempPathFactory, shared_photos: Path, yunet_file: Path
) -> tuple[tuple[dict, dict], tuple[dict, dict]]:
    """Run the kill -9 session once: (store, albums) recovered and of a clean scan."""
    tmp_path = tmp_path_factory.mktemp("crash")
    rng = random.Random(int(os.environ.get("FACECLUSTER_CRASH_SEED", "20240607")))
    photos, holding = tmp_path / "photos", tmp_path / "holding"
    for rel, src in LIBRARY.items():
        for base in (photos, holding):
            (base / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(shared_photos / src, photos / rel)
    hashes = {rel: _sha(photos / rel) for rel in LIBRARY}
    before = {rel: (photos / rel).stat().st_mtime_ns for rel in LIBRARY}
    cfg = _config(tmp_path, yunet_file.parent)

    def show(present: set[str]) -> None:
        for rel in LIBRARY:
            here, away = photos / rel, holding / rel
            if rel in present and away.exists():
                away.rename(here)
            elif rel not in present and here.exists():
                here.rename(away)

    kills: Counter[str] = Counter()
    runs = 0
    while sum(kills.values()) < MIN_KILLS and runs < MAX_RUNS:
        hidden = set(rng.sample(sorted(LIBRARY), rng.randint(0, 3)))
        present = set(LIBRARY) - hidden
        show(present)
        result = _run_and_kill(cfg, STRATEGIES[runs % len(STRATEGIES)], rng)
        runs += 1
        if result.killed:
            kills[result.phase] += 1
        else:
            assert result.returncode == 0, f"scan failed after a crash (run {runs})"
        _check_store(tmp_path / "state", {rel: hashes[rel] for rel in present})
        _check_albums(tmp_path / "albums", set(hashes.values()))
    print(f"kill -9 by phase: {dict(kills)} in {runs} runs")
    assert sum(kills.values()) >= MIN_KILLS, f"only {dict(kills)} kills in {runs} runs"
    # Clustering a dozen faces takes milliseconds, so a kill aimed at it can miss; the
    # store and albums checks above ran after every kill whichever phase it hit.
    assert sum(1 for name, _, _ in STRATEGIES if kills[name]) >= 3, f"phases hit: {kills}"

    show(set(LIBRARY))
    done = subprocess.run(_scan_cmd(cfg), capture_output=True, env=_env(), cwd=REPO,
                          timeout=RUN_TIMEOUT)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    recovered = (_store_view(tmp_path / "state", photos), _album_view(tmp_path / "albums"))

    # A clean scan of the very same paths (same entry names) to compare with.
    (tmp_path / "state").rename(tmp_path / "crashed-state")
    (tmp_path / "albums").rename(tmp_path / "crashed-albums")
    clean = subprocess.run(_scan_cmd(cfg), capture_output=True, env=_env(), cwd=REPO,
                           timeout=RUN_TIMEOUT)
    assert clean.returncode == 0, clean.stderr.decode()[-2000:]
    expected = (_store_view(tmp_path / "state", photos), _album_view(tmp_path / "albums"))
    assert {rel: (photos / rel).stat().st_mtime_ns for rel in LIBRARY} == before
    assert {rel: _sha(photos / rel) for rel in LIBRARY} == hashes
    return recovered, expected


def test_store_recovers_from_kill_9(crashed_and_clean) -> None:
    recovered, expected = crashed_and_clean
    assert recovered[0]["photos"] == expected[0]["photos"], "photos lost or indexed twice"
    assert recovered[0]["faces"] == expected[0]["faces"], "faces differ from a clean run"
    assert recovered[0]["people"] == expected[0]["people"], "people differ from a clean run"


def test_albums_recover_from_kill_9(crashed_and_clean) -> None:
    recovered, expected = crashed_and_clean
    assert recovered[1]["albums"] == expected[1]["albums"], "albums differ from a clean run"
    assert recovered[1]["thumbnail_kinds"] == expected[1]["thumbnail_kinds"]
    assert recovered[1]["leftovers"] == [], "temporary files of killed runs left behind"


def test_entries_of_a_run_killed_before_its_manifest_are_cleaned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    srcs = []
    for i in range(2):
        srcs.append(photos / f"p{i}.jpg")
        srcs[-1].write_bytes(b"\xff\xd8" + bytes([i]) * 100 + b"\xff\xd9")
    albums = tmp_path / "albums"
    # kill -9 after the entries were made but before the manifest was saved
    monkeypatch.setattr(writer_mod, "save_manifest", lambda *args, **kwargs: None)
    write_albums(albums, [AlbumPlan("person-0001", (1,), tuple(srcs), ())], "copy")
    monkeypatch.undo()
    # the next run's re-clustering handed out a new person id for the same photos
    report = write_albums(albums, [AlbumPlan("person-0002", (2,), tuple(srcs), ())], "copy")
    visible = sorted(p.name for p in albums.iterdir() if not p.name.startswith("."))
    assert visible == ["person-0002"], f"stale album left by the killed run: {visible}"
    assert report.errors == 0


def test_writer_clears_temporary_files_of_a_killed_run(tmp_path: Path) -> None:
    """What a kill in the middle of a copy leaves behind is cleaned by the next run."""
    photos = tmp_path / "photos"
    photos.mkdir()
    src = photos / "a.jpg"
    src.write_bytes(b"\xff\xd8 not really a photo \xff\xd9")
    albums = tmp_path / "albums"
    plan = AlbumPlan("person-0001", (1,), (src,), ())
    write_albums(albums, [plan], "copy")
    # A copy cut short by kill -9: a hidden temporary file beside the entries.
    leftover = albums / "person-0001" / ".facecluster-tmp-0123456789abcdef"
    leftover.write_bytes(b"\xff\xd8 half")
    manifest_tmp = albums / ".facecluster" / ".facecluster-tmp-fedcba9876543210"
    manifest_tmp.write_bytes(b'{"entr')
    write_albums(albums, [plan], "copy")
    assert len(read_manifest(albums).entries) == 1
    left = [p.name for p in (leftover, manifest_tmp) if p.exists()]
    assert not left, f"temporary files of a killed run never removed: {left}"
