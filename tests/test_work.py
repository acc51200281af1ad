"""Sorting a batch of watcher events into the work it asks for."""

from __future__ import annotations

from pathlib import Path

from daemon.service.work import Work, work_from
from daemon.watcher import Change, RootBack, RootGone

P = Path("/p")


def test_upserts_are_indexed_deletes_forgotten_and_moves_both() -> None:
    work = work_from([
        Change("upsert", P / "new.jpg"),
        Change("delete", P / "gone.jpg"),
        Change("move", P / "a.jpg", P / "b" / "a.jpg"),
    ])
    assert work == Work(to_index=[P / "new.jpg", P / "b" / "a.jpg"],
                        to_forget=[P / "gone.jpg", P / "a.jpg"])
    assert work.touches_photos


def test_a_deleted_folder_asks_for_a_check_of_everything_under_it() -> None:
    work = work_from([Change("delete", P / "album", is_dir=True)])
    assert work == Work(folder_gone=True)
    assert work.touches_photos


def test_roots_coming_and_going_touch_no_photo() -> None:
    gone = work_from([RootGone(P)])
    assert gone == Work() and not gone.touches_photos
    back = work_from([RootBack(P)])
    assert back == Work(root_back=True) and not back.touches_photos
