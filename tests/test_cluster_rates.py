"""Each cluster worker's photos/s for ``status`` (no Dask needed)."""

from __future__ import annotations

from daemon.remote.rates import WorkerRates


def test_a_rate_counts_the_photos_ended_since_the_first_completion() -> None:
    rates = WorkerRates(window=60.0)
    rates.record("w1", 4, now=100.0)
    assert rates.rate("w1", now=100.0) == 0.0  # one completion measures nothing yet
    rates.record("w1", 4, now=102.0)
    rates.record("w1", 2, now=104.0)
    assert rates.rate("w1", now=104.0) == 6 / 4.0
    assert rates.total("w1") == 10
    assert rates.rate("w2", now=104.0) == 0.0 and rates.total("w2") == 0


def test_old_completions_leave_the_window_and_memory_as_new_ones_arrive() -> None:
    rates = WorkerRates(window=10.0)
    for t in range(100):
        rates.record("w1", 1, now=float(t))
    assert len(rates._recent["w1"]) == 11  # t = 89..99: bounded without anyone asking
    assert rates.rate("w1", now=99.0) == 10 / 10.0
    assert rates.rate("w1", now=500.0) == 0.0  # idle for long: nothing recent
    assert rates.total("w1") == 100


def test_nothing_ended_records_nothing() -> None:
    rates = WorkerRates()
    rates.record("w1", 0, now=1.0)
    assert "w1" not in rates._recent and rates.total("w1") == 0
