"""Writers of labels.toml racing: one lock, no lost edit, the loser told; owner kept."""

from __future__ import annotations

import multiprocessing
import os
import threading
from pathlib import Path

import pytest

import daemon.fsutil as fsutil
import daemon.people.naming as naming
from daemon.fsutil import TMP_PREFIX
from daemon.people.labels import load_labels
from daemon.people.naming import LabelsConflict, exclude, labels_digest, name_people


@pytest.fixture
def labels_file(tmp_path: Path) -> Path:
    path = tmp_path / "labels.toml"
    path.write_text('[people]\nperson-0001 = "Ann"\n', encoding="utf-8")
    return path


def _interleave(monkeypatch: pytest.MonkeyPatch, other: threading.Thread) -> None:
    """Run ``other`` to its end (or 1 s) right before the first rename of labels.toml."""
    real = os.replace
    done = []

    def replace(src, dst, **kw):  # noqa: ANN001, ANN202
        if not done and str(dst).endswith("labels.toml"):
            done.append(True)
            other.start()
            other.join(timeout=1.0)
        return real(src, dst, **kw)

    monkeypatch.setattr(fsutil.os, "replace", replace)


def test_a_writer_between_the_last_look_and_the_rename_is_not_lost(
    labels_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors: list[BaseException] = []

    def second() -> None:
        try:
            exclude(labels_file, 1, ["face-2"])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    other = threading.Thread(target=second)
    _interleave(monkeypatch, other)
    exclude(labels_file, 1, ["face-1"])
    other.join(timeout=30)
    assert not other.is_alive()
    assert errors == []
    # Both edits succeeded, so both are in the file: the second waited for the first.
    assert load_labels(labels_file).people[1].exclude == ("face-1", "face-2")


def test_the_loser_of_a_race_with_a_digest_is_refused_not_overwritten(
    labels_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown = labels_digest(labels_file)  # both "pages" were drawn from this file
    errors: list[BaseException] = []

    def second() -> None:
        try:
            name_people(labels_file, [2], "Bob", expected_digest=shown)
        except BaseException as e:  # noqa: BLE001 - checked below
            errors.append(e)

    other = threading.Thread(target=second)
    _interleave(monkeypatch, other)
    name_people(labels_file, [3], "Cy", expected_digest=shown)
    other.join(timeout=30)
    people = load_labels(labels_file).people
    assert people[3].name == "Cy"
    assert 2 not in people
    assert len(errors) == 1 and isinstance(errors[0], LabelsConflict)
    assert "changed since it was read" in str(errors[0])


def _exclude_many(path: str, worker: int, count: int) -> None:
    for i in range(count):
        exclude(Path(path), 1, [f"face-{worker * 1000 + i}"])


def test_processes_racing_lose_no_edit(labels_file: Path) -> None:
    workers, count = 4, 25
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_exclude_many, args=(str(labels_file), w, count))
        for w in range(workers)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * workers
    excluded = set(load_labels(labels_file).people[1].exclude)
    wanted = {f"face-{w * 1000 + i}" for w in range(workers) for i in range(count)}
    assert wanted - excluded == set()


def test_a_held_lock_makes_a_writer_wait_then_refuse(
    labels_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(naming, "LOCK_WAIT_SECONDS", 0.05)
    before = labels_file.read_bytes()
    with (
        fsutil.file_lock(naming.lock_path(labels_file)),
        pytest.raises(LabelsConflict, match="being edited"),
    ):
        name_people(labels_file, [1], "Bea")
    assert labels_file.read_bytes() == before
    name_people(labels_file, [1], "Bea")  # a dead or finished holder blocks nobody
    assert load_labels(labels_file).people[1].name == "Bea"


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_an_edit_keeps_owner_group_and_mode(labels_file: Path) -> None:
    os.chown(labels_file, 65534, 65534)
    os.chmod(labels_file, 0o640)
    name_people(labels_file, [1], "Bea")
    st = os.stat(labels_file)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (65534, 65534, 0o640)


def test_an_edit_clears_stale_temp_files_of_killed_edits(labels_file: Path) -> None:
    stale = labels_file.with_name(TMP_PREFIX + "0123456789abcdef")
    fresh = labels_file.with_name(TMP_PREFIX + "fedcba9876543210")
    stale.write_bytes(b"half")
    fresh.write_bytes(b"writing")
    old = os.stat(stale).st_mtime - 2 * naming.STALE_TEMP_SECONDS
    os.utime(stale, (old, old))
    name_people(labels_file, [1], "Bea")
    assert not stale.exists()
    assert fresh.exists()  # may be another writer's, right now


def test_remove_stale_temps_takes_a_clock_and_spares_links(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / (TMP_PREFIX + "a")).write_text("x")
    (folder / (TMP_PREFIX + "b")).symlink_to(outside)
    (folder / "not-ours.txt").write_text("x")
    now = os.stat(folder / (TMP_PREFIX + "a")).st_mtime
    assert fsutil.remove_stale_temps(folder, older_than=60, now=now + 10) == []
    removed = fsutil.remove_stale_temps(folder, older_than=60, now=now + 61)
    assert [p.name for p in removed] == [TMP_PREFIX + "a"]
    assert outside.read_text() == "keep"
    assert sorted(os.listdir(folder)) == sorted([TMP_PREFIX + "b", "not-ours.txt"])
