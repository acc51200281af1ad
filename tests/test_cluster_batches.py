"""How the service cuts photos into Dask tasks, and what a worker checks before indexing.

No scheduler here: the pure rules, and the task's photo function with a stand-in engine.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.config import DetectionConfig
from daemon.remote.indexer import BATCH, MAX_BATCH, TASK_SECONDS, TaskSpeed, batch_size


def _round(n: int, threads: int) -> list[int]:
    sizes, left = [], n
    while left:
        sizes.append(batch_size(left, threads))
        left -= sizes[-1]
    return sizes


def test_batches_are_full_until_the_end_of_a_round_then_shrink_to_single_photos() -> None:
    sizes = _round(36, threads=2)
    assert sum(sizes) == 36
    assert sizes[:4] == [BATCH] * 4 and max(sizes) == BATCH
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[-3:] == [1, 1, 1]  # the last photos: one per task, any worker takes one


def test_more_workers_shrink_batches_earlier_and_an_endless_source_gets_full_ones() -> None:
    assert batch_size(16, threads=1) == BATCH
    assert batch_size(16, threads=4) == 2
    assert batch_size(None, threads=4) == BATCH
    assert batch_size(10_000, threads=64) == BATCH


def test_tasks_grow_to_last_about_a_second_once_the_photos_speed_is_known() -> None:
    speed = TaskSpeed()
    assert speed.batch() == BATCH  # nothing measured yet
    speed.add(4 * 0.09, 4)  # 12 MP photos, ~90 ms each
    assert speed.batch() == round(TASK_SECONDS / 0.09)
    small = TaskSpeed()
    small.add(0.06, 4)  # 15 ms each: capped
    assert small.batch() == MAX_BATCH
    slow = TaskSpeed()
    slow.add(8.0, 4)  # a NAS core at 2 s a photo: one per task
    assert slow.batch() == 1
    slow.add(0.0, 4)  # a refused batch did nothing: learns nothing
    assert slow.per_photo == 2.0


def test_a_worker_beside_the_service_trusts_its_hash_a_desktop_checks_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("distributed")
    from daemon.config import EngineConfig
    from daemon.remote import task

    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"the photo")
    indexed: list[Path] = []
    monkeypatch.setattr(task, "index_one", lambda path, engine, detection: indexed.append(path))
    wrong = "0" * 64  # not these bytes' hash
    beside = task.EnginePlugin(EngineConfig(), same_files=True)
    desk = task.EnginePlugin(EngineConfig())
    for plugin in (beside, desk):
        plugin.engine = object()  # type: ignore[assignment]
    assert task._one(beside, str(photo), wrong, None, DetectionConfig(), str(tmp_path)) is None
    assert indexed == [photo]
    answer = task._one(desk, str(photo), wrong, None, DetectionConfig(), str(tmp_path))
    assert isinstance(answer, task.NeedBytes) and "other bytes" in answer.why
    assert indexed == [photo]  # the desktop indexed nothing it could not vouch for
    assert task.EnginePlugin.__getstate__(beside)["same_files"] is True  # survives the trip
