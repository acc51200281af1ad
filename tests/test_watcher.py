"""The watcher: settling, filtering, de-duplication, bounds, roots that come and go.

The queue logic is tested with a fake clock; the watcher itself with real watchdog
observers on temporary folders, polling with deadlines (never fixed sleeps) for results.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from pathlib import Path

import pytest

from daemon import watcher as watcher_mod
from daemon.config import Config, from_dict
from daemon.watcher import Change, ChangeQueue, RootBack, RootGone, Watcher

# -- ChangeQueue with a fake clock ----------------------------------------------------


class FakeFiles:
    def __init__(self) -> None:
        self.now = 0.0
        self.sigs: dict[Path, tuple[int, int]] = {}

    def clock(self) -> float:
        return self.now

    def stat(self, path: Path) -> tuple[int, int] | None:
        return self.sigs.get(path)

    def write(self, q: ChangeQueue, path: Path, size: int, *, closed: bool = False) -> None:
        self.sigs[path] = (size, int(self.now * 1e9))
        q.touch(path, self.sigs[path], closed=closed)


def make_queue(settle: float = 2.0, limit: int = 100) -> tuple[ChangeQueue, FakeFiles]:
    files = FakeFiles()
    return ChangeQueue(settle, limit, clock=files.clock, stat_file=files.stat), files


def drain(q: ChangeQueue) -> list[Change]:
    q.release_settled()
    return q.take()


def test_file_is_released_only_after_it_held_still_for_the_settle_time() -> None:
    q, f = make_queue(settle=2.0)
    a = Path("/p/a.jpg")
    f.write(q, a, 100)
    for _ in range(5):  # still growing every second
        f.now += 1.0
        assert drain(q) == []
        f.write(q, a, f.sigs[a][0] + 100)
    f.now += 1.9
    assert drain(q) == []
    f.now += 0.2
    assert drain(q) == [Change("upsert", a)]
    assert len(q) == 0


def test_growth_without_events_is_caught_by_the_final_stat() -> None:
    q, f = make_queue(settle=2.0)
    a = Path("/p/a.jpg")
    f.write(q, a, 100)
    f.now += 2.5
    f.sigs[a] = (200, 2_500_000_000)  # changed, but no event (e.g. a slow poller)
    assert drain(q) == []
    f.now += 2.0
    assert drain(q) == [Change("upsert", a)]


def test_close_after_write_shortens_the_wait_but_still_checks() -> None:
    q, f = make_queue(settle=10.0)
    a = Path("/p/a.jpg")
    f.write(q, a, 100, closed=True)
    f.now += 0.2
    assert drain(q) == []
    f.now += 0.4
    assert drain(q) == [Change("upsert", a)]
    b = Path("/p/b.jpg")
    f.write(q, b, 100, closed=True)
    f.now += 0.6
    f.sigs[b] = (150, 1)  # re-opened and appended: back to the full settle time
    assert drain(q) == []
    f.now += 1.0
    assert drain(q) == []
    f.now += 9.5
    assert drain(q) == [Change("upsert", b)]


def test_vanished_file_is_dropped() -> None:
    q, f = make_queue(settle=1.0)
    a = Path("/p/a.jpg")
    f.write(q, a, 1)
    del f.sigs[a]
    f.now += 2
    assert drain(q) == []
    assert len(q) == 0


def test_deduplication_and_order() -> None:
    q, f = make_queue(settle=1.0)
    a, b = Path("/p/a.jpg"), Path("/p/b.jpg")
    f.write(q, a, 1)
    f.write(q, a, 1)
    f.write(q, b, 1)
    q.delete(Path("/p/old.jpg"))
    q.delete(Path("/p/old.jpg"))
    f.now += 1.5
    assert drain(q) == [
        Change("delete", Path("/p/old.jpg")), Change("upsert", a), Change("upsert", b)
    ]


def test_rewrite_of_a_ready_file_sends_it_back_to_settling() -> None:
    q, f = make_queue(settle=1.0)
    a = Path("/p/a.jpg")
    f.write(q, a, 1)
    f.now += 1.5
    q.release_settled()
    f.write(q, a, 2)
    assert q.take() == []
    f.now += 1.5
    assert drain(q) == [Change("upsert", a)]


def test_moves_and_deletes_combine() -> None:
    q, _ = make_queue()
    a, b, c = Path("/p/a.jpg"), Path("/p/b.jpg"), Path("/p/c.jpg")
    q.move(a, b)
    q.move(b, c)
    assert q.take() == [Change("move", a, c)]
    q.move(a, b)
    q.delete(b)
    assert sorted(q.take(), key=lambda ch: ch.path) == [
        Change("delete", a), Change("delete", b)
    ]
    q.move(a, b)
    q.move(b, a)
    assert q.take() == [Change("upsert", a)]


def test_move_of_a_file_still_settling_keeps_settling_under_the_new_name() -> None:
    q, f = make_queue(settle=1.0)
    a, b = Path("/p/a.jpg"), Path("/p/b.jpg")
    f.write(q, a, 1)
    f.sigs[b] = f.sigs.pop(a)
    q.move(a, b)
    assert q.take() == [Change("delete", a)]
    f.now += 1.5
    assert drain(q) == [Change("upsert", b)]


def test_folder_delete_forgets_files_settling_under_it() -> None:
    q, f = make_queue(settle=1.0)
    f.write(q, Path("/p/d/a.jpg"), 1)
    q.delete(Path("/p/d"), is_dir=True)
    f.now += 2
    assert drain(q) == [Change("delete", Path("/p/d"), is_dir=True)]


def test_limit_drops_new_paths_and_asks_for_a_rescan() -> None:
    q, f = make_queue(limit=3)
    for i in range(3):
        f.write(q, Path(f"/p/{i}.jpg"), 1)
    assert not q.overflowed
    f.write(q, Path("/p/0.jpg"), 2)  # already held: no new room needed
    assert not q.overflowed
    f.write(q, Path("/p/new.jpg"), 1)
    q.delete(Path("/p/gone.jpg"))
    assert q.overflowed
    assert len(q) == 3
    assert q.dropped == 2


def test_drop_under_root() -> None:
    q, f = make_queue(settle=1.0)
    f.write(q, Path("/r1/a.jpg"), 1)
    q.delete(Path("/r1/b.jpg"))
    q.delete(Path("/r2/c.jpg"))
    assert q.drop_under(Path("/r1")) == 2
    assert q.take() == [Change("delete", Path("/r2/c.jpg"))]


# -- the real watcher ------------------------------------------------------------------


def make_cfg(tmp_path: Path, **daemon: object) -> Config:
    (tmp_path / "photos").mkdir(exist_ok=True)
    table = {
        "watch": ["photos"],
        "albums_dir": "albums",
        "state_dir": "state",
        "daemon": {"settle_seconds": 0.6, "poll_interval": 0.2, **daemon},
    }
    return from_dict(table, tmp_path)


def collect(w: Watcher, until, timeout: float = 15.0) -> list:
    """Poll ``w`` until ``until(events_so_far)`` is true or the deadline passes."""
    got: list = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got += w.poll(0.2)
        if until(got):
            return got
    raise AssertionError(f"timed out; got {got}")


def upserts(events: list) -> list[Path]:
    return [e.path for e in events if isinstance(e, Change) and e.kind == "upsert"]


@pytest.mark.parametrize("polling", [False, True], ids=["events", "polling"])
def test_slow_copy_is_released_only_once_complete(tmp_path: Path, polling: bool) -> None:
    cfg = make_cfg(tmp_path, polling=polling)
    target = cfg.watch[0] / "sub" / "slow.jpg"
    target.parent.mkdir()
    chunk = b"x" * 4096
    done = threading.Event()

    def writer() -> None:
        with open(target, "wb") as fh:
            for _ in range(8):
                fh.write(chunk)
                fh.flush()
                time.sleep(0.25)  # slower than nothing, faster than the settle time
        done.set()

    with Watcher(cfg, root_check_seconds=0.2) as w:
        assert w.modes[cfg.watch[0]] == ("polling" if polling else "events")
        t = threading.Thread(target=writer)
        t.start()
        try:
            events = collect(w, lambda ev: target in upserts(ev))
        finally:
            t.join()
        assert done.is_set()
        assert target.stat().st_size == 8 * len(chunk)
        assert upserts(events) == [target]


def test_ignored_and_non_photo_files_are_ignored(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    root = cfg.watch[0]
    with Watcher(cfg, root_check_seconds=0.2) as w:
        (root / "@eaDir").mkdir()
        (root / "@eaDir" / "thumb.jpg").write_bytes(b"1")
        (root / ".hidden.jpg").write_bytes(b"1")
        (root / "copying.jpg.part").write_bytes(b"1")
        (root / "notes.txt").write_bytes(b"1")
        (root / "Thumbs~").write_bytes(b"1")
        (root / "real.JPG").write_bytes(b"1")
        events = collect(w, lambda ev: root / "real.JPG" in upserts(ev))
        # Everything was written before real.JPG, so it would have settled by now.
        events += w.poll(0.8)
    assert upserts(events) == [root / "real.JPG"]
    assert [e for e in events if not (isinstance(e, Change) and e.kind == "upsert")] == []


def test_delete_move_and_rename_into_place(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    root = cfg.watch[0]
    a, b, c = root / "a.jpg", root / "b.jpg", root / "c.jpg"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    (root / "dir").mkdir()
    (root / "dir" / "d.jpg").write_bytes(b"d")
    with Watcher(cfg, root_check_seconds=0.2) as w:
        a.rename(root / "a2.jpg")
        b.unlink()
        part = root / "c.jpg.part"
        part.write_bytes(b"c")
        part.rename(c)
        (root / "dir").rename(root / "dir2")
        events = collect(
            w,
            lambda ev: {Change("move", a, root / "a2.jpg"), Change("delete", b),
                        Change("upsert", c), Change("move", root / "dir" / "d.jpg",
                                                    root / "dir2" / "d.jpg")} <= set(ev),
        )
    assert not any(isinstance(e, Change) and e.path == part for e in events)


def test_root_gone_and_back_without_deletes(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    root = cfg.watch[0]
    (root / "keep.jpg").write_bytes(b"k")
    away = tmp_path / "away"
    with Watcher(cfg, root_check_seconds=0.2) as w:
        root.rename(away)
        (away / "keep.jpg").unlink()  # happens while the root is gone: must not surface
        events = collect(w, lambda ev: RootGone(root) in ev)
        assert w.modes[root] == "gone"
        assert w.gone_roots == {root}
        assert not w.root_present(root / "keep.jpg")
        away.rename(root)
        events += collect(w, lambda ev: RootBack(root) in ev)
        assert w.modes[root] == "events"
        (root / "new.jpg").write_bytes(b"n")  # watched again after its return
        events += collect(w, lambda ev: root / "new.jpg" in upserts(ev))
    assert not [e for e in events if isinstance(e, Change) and e.kind == "delete"]


def test_missing_root_at_start_is_reported(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    cfg.watch[0].rmdir()
    with Watcher(cfg, root_check_seconds=0.2) as w:
        assert w.poll(0.1) == [RootGone(cfg.watch[0])]
        cfg.watch[0].mkdir()
        collect(w, lambda ev: RootBack(cfg.watch[0]) in ev)


def test_burst_past_the_limit_requests_a_rescan(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, queue_limit=5)
    root = cfg.watch[0]
    with Watcher(cfg, root_check_seconds=0.2) as w:
        for i in range(40):
            (root / f"{i}.jpg").write_bytes(b"x")
        deadline = time.monotonic() + 10
        while not w.rescan_requested and time.monotonic() < deadline:
            w.poll(0.1, limit=0)
        assert w.rescan_requested
        assert w.pending() <= 5
        assert w.take_rescan_request()
        assert not w.rescan_requested


def test_inotify_limit_falls_back_to_polling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class FullInotify(watcher_mod.Observer):  # type: ignore[misc, valid-type]
        def schedule(self, *args, **kwargs):
            raise OSError(errno.ENOSPC, "inotify watch limit reached")

    monkeypatch.setattr(watcher_mod, "Observer", FullInotify)
    cfg = make_cfg(tmp_path)
    with Watcher(cfg, root_check_seconds=0.2) as w:
        assert w.modes[cfg.watch[0]] == "polling"
        (cfg.watch[0] / "p.jpg").write_bytes(b"p")
        collect(w, lambda ev: cfg.watch[0] / "p.jpg" in upserts(ev))


def test_kernel_queue_overflow_requests_a_rescan(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    with Watcher(cfg, root_check_seconds=0.2) as w:
        assert not w.rescan_requested
        # What watchdog logs when inotify reports IN_Q_OVERFLOW (it emits no event).
        logging.getLogger("watchdog.observers.inotify_c").warning(
            "Inotify queue overflowed; filesystem events were lost"
        )
        assert w.rescan_requested
    w.take_rescan_request()
    logging.getLogger("watchdog.observers.inotify_c").warning("queue overflowed")
    assert not w.rescan_requested  # a stopped watcher no longer listens


def test_unmounted_share_leaving_its_empty_mount_point_counts_as_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = make_cfg(tmp_path)
    root = cfg.watch[0]
    (root / "a.jpg").write_bytes(b"a")  # the share holds photos (an empty one is not there)
    mounted = {root}
    monkeypatch.setattr(watcher_mod.os.path, "ismount", lambda p: Path(p) in mounted)
    with Watcher(cfg, root_check_seconds=0.2) as w:
        assert w.modes[root] == "events"
        mounted.clear()  # the share goes; the empty mount point directory stays
        collect(w, lambda ev: RootGone(root) in ev)
        assert not w.root_present(root / "a.jpg")
        mounted.add(root)
        collect(w, lambda ev: RootBack(root) in ev)
        assert w.root_present(root / "a.jpg")
