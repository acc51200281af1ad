"""The service's timing rules, driven by a fake clock: each test states one rule."""

from __future__ import annotations

from dataclasses import replace

from daemon.config import DaemonConfig
from daemon.service.schedule import ALBUM_BURST_INTERVAL, CONFIG_POLL, LABELS_POLL, Schedule

RULES = DaemonConfig(
    recluster_after_faces=10, recluster_quiet_seconds=20.0, recluster_interval=3600.0,
    rescan_interval=600.0,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(**rules: object) -> tuple[Schedule, FakeClock]:
    clock = FakeClock()
    return Schedule(replace(RULES, **rules), clock), clock


def recluster(s: Schedule, clock: FakeClock, seconds: float) -> None:
    started = s.now()
    clock.now += seconds
    s.reclustered(started)


# -- re-clustering --------------------------------------------------------------------


def test_enough_new_faces_recluster_at_once() -> None:
    s, _ = make(recluster_after_faces=10)
    assert not s.faces_added(6)
    assert s.faces_added(4)


def test_recluster_after_faces_of_zero_still_needs_one_face() -> None:
    s, _ = make(recluster_after_faces=0)
    assert not s.faces_added(0)
    assert s.faces_added(1)


def test_a_few_new_faces_wait_for_a_quiet_spell() -> None:
    s, clock = make(recluster_quiet_seconds=20.0)
    s.photos_changed()
    s.faces_added(3)
    clock.now += 19.9
    assert not s.recluster_due()
    clock.now += 0.1
    assert s.recluster_due()


def test_each_change_restarts_the_quiet_spell() -> None:
    s, clock = make(recluster_quiet_seconds=20.0)
    s.faces_added(3)
    for _ in range(5):
        clock.now += 15.0
        s.photos_changed()
        assert not s.recluster_due()
    clock.now += 20.0
    assert s.recluster_due()


def test_quiet_means_at_least_twice_the_last_reclustering() -> None:
    s, clock = make(recluster_quiet_seconds=20.0)
    recluster(s, clock, 100.0)  # a large library: re-clustering took 100 s
    s.photos_changed()
    s.faces_added(1)
    clock.now += 199.0
    assert not s.recluster_due()
    clock.now += 1.0
    assert s.recluster_due()


def test_no_new_faces_no_quiet_spell_reclustering() -> None:
    s, clock = make()
    s.photos_changed()  # e.g. a photo without faces, or a removal
    clock.now += 1000.0
    assert not s.recluster_due()


def test_labels_ask_for_a_reclustering_when_quiet() -> None:
    s, clock = make(recluster_quiet_seconds=20.0)
    s.photos_changed()
    s.want_recluster()
    assert not s.recluster_due()
    clock.now += 20.0
    assert s.recluster_due()


def test_reclustering_clears_what_waited() -> None:
    s, clock = make()
    s.faces_added(3)
    s.want_recluster()
    clock.now += 100.0
    recluster(s, clock, 1.0)
    assert (s.pending_faces, s.recluster_wanted) == (0, False)
    assert not s.recluster_due()


def test_the_daily_interval_reclusters_regardless() -> None:
    s, clock = make(recluster_interval=3600.0)
    clock.now += 3599.0
    assert not s.recluster_due()
    clock.now += 1.0
    s.photos_changed()  # not even quiet
    assert s.recluster_due()
    recluster(s, clock, 5.0)
    assert not s.recluster_due()


def test_an_interval_of_zero_disables_the_schedule() -> None:
    s, clock = make(recluster_interval=0.0)
    clock.now += 10 * 86400.0
    assert not s.recluster_due()


def test_a_rescan_reclusters_only_when_something_changed_or_waits() -> None:
    s, _ = make()
    assert not s.recluster_after_rescan(changed=False, never_clustered=False)
    assert s.recluster_after_rescan(changed=True, never_clustered=False)
    assert s.recluster_after_rescan(changed=False, never_clustered=True)
    s.faces_added(1)
    assert s.recluster_after_rescan(changed=False, never_clustered=False)
    t, _ = make()
    t.want_recluster()
    assert t.recluster_after_rescan(changed=False, never_clustered=False)


# -- albums ---------------------------------------------------------------------------


def test_albums_are_written_at_once_outside_a_burst() -> None:
    s, _ = make()
    s.albums_written()
    assert not s.put_off_albums(in_burst=False)
    assert not s.albums_dirty


def test_during_a_burst_albums_are_written_at_most_every_few_seconds() -> None:
    s, clock = make()
    assert not s.put_off_albums(in_burst=True)  # never written yet: write now
    s.albums_written()
    clock.now += ALBUM_BURST_INTERVAL - 0.1
    assert s.put_off_albums(in_burst=True)
    assert s.albums_dirty
    clock.now += 0.1
    assert not s.put_off_albums(in_burst=True)


def test_a_put_off_write_is_due_once_the_burst_is_over() -> None:
    s, _ = make()
    s.albums_written()
    assert not s.albums_overdue(in_burst=False)
    s.put_off_albums(in_burst=True)
    assert not s.albums_overdue(in_burst=True)
    assert s.albums_overdue(in_burst=False)
    s.albums_written()
    assert not s.albums_overdue(in_burst=False)


# -- rescans --------------------------------------------------------------------------


def test_the_folders_are_rescanned_every_interval() -> None:
    s, clock = make(rescan_interval=600.0)
    clock.now += 599.0
    assert not s.rescan_due()
    clock.now += 1.0
    assert s.rescan_due()
    s.rescanned()
    clock.now += 599.0
    assert not s.rescan_due()


def test_a_rescan_interval_of_zero_disables_periodic_rescans() -> None:
    s, clock = make(rescan_interval=0.0)
    clock.now += 10 * 86400.0
    assert not s.rescan_due()


def test_an_asked_for_rescan_is_due_at_once() -> None:
    s, _ = make()
    s.want_rescan()
    assert s.rescan_due()
    s.rescanned()
    assert not s.rescan_due()


def test_a_rescan_that_failed_stays_due() -> None:
    s, clock = make(rescan_interval=600.0)
    clock.now += 600.0
    assert s.rescan_due()
    # ... the rescan raised, so rescanned() was never called ...
    clock.now += 1.0
    assert s.rescan_due()


# -- labels ---------------------------------------------------------------------------


def test_labels_are_looked_at_once_per_poll_interval() -> None:
    s, clock = make()
    assert s.labels_check_due()
    assert not s.labels_check_due()
    clock.now += LABELS_POLL - 0.01
    assert not s.labels_check_due()
    clock.now += 0.01
    assert s.labels_check_due()


# -- the config file ------------------------------------------------------------------


def test_config_file_is_looked_at_once_per_poll_interval() -> None:
    s, clock = make()
    assert s.config_check_due()
    assert not s.config_check_due()
    clock.now += CONFIG_POLL - 0.01
    assert not s.config_check_due()
    clock.now += 0.01
    assert s.config_check_due()


def test_config_and_labels_checks_keep_their_own_cadence() -> None:
    s, _ = make()
    assert s.labels_check_due()
    assert s.config_check_due()  # the labels check just now does not use up the config's
