"""Birth dates in clustering: what a batch of new faces costs, and what it obeys."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from daemon.review import dates
from daemon.stages.pipeline import Pipeline
from tests.test_identity import _add, _build, _config, _person_of


def _dated(state: Path, kept: dict[str, str]) -> None:
    (state / dates.DATES_FILE).write_text(json.dumps(kept), "utf-8")


@pytest.fixture
def born_library(tmp_path: Path):
    """The synthetic library, clustered, with person 0's first photo dated before the
    ``born`` labels.toml gives them (the photos' content hashes are their names)."""
    cfg = _config(tmp_path)
    with Pipeline(cfg, create=True) as p:
        _build(p)
        ann = _person_of(p)[("a0", 0)]
        cfg.labels_file.write_text(f'[people]\nperson-{ann:04d} = {{ born = "2010-01" }}\n')
        assert p.reload_labels() is None
        yield p, ann


def test_new_faces_read_their_own_photos_and_the_dates_file_once(
        born_library, monkeypatch: pytest.MonkeyPatch) -> None:
    p, ann = born_library
    state = p.cfg.state_dir
    _dated(state, {"a9": "2009-05-05", "a8": "2015-05-05"})
    reads: list[Path] = []
    real_read = dates.read_dates
    monkeypatch.setattr(dates, "read_dates", lambda d: reads.append(d) or real_read(d))

    def whole_table(*_a, **_k):
        raise AssertionError("a batch of new faces scanned every photo")

    monkeypatch.setattr(p.store, "iter_photos", whole_table)
    people = p._people
    early = _add(p, "a9", [0])
    people.assign_incremental(early)
    late = _add(p, "a8", [0])
    people.assign_incremental(late)
    person = {f.id: f.person_id for f in p.store.faces(ids=[*early, *late])}
    assert person[early[0]] != ann  # taken before the birth: never theirs
    assert person[late[0]] == ann
    assert len(reads) == 1  # the file did not change between the batches

    # Changed by someone else (another process dated a photo): read again, once.
    later = _add(p, "a7", [0])
    _dated(state, {"a9": "2009-05-05", "a8": "2015-05-05", "a7": "2001-01-01"})
    os.utime(state / dates.DATES_FILE, ns=(1, 1))  # a new stamp even on a coarse clock
    people.assign_incremental(later)
    assert len(reads) == 2
    assert p.store.faces(ids=later)[0].person_id != ann

    # A photo never dated (the common case: it was just indexed): its own date is read
    # and kept, the library's dates are not parsed again.
    undated = _add(p, "a6", [0])
    people.assign_incremental(undated)
    assert len(reads) == 2
    assert "a6" in real_read(state)  # kept, so it is not read again either


def test_a_full_clustering_keeps_the_early_photo_out(born_library) -> None:
    p, ann = born_library
    _dated(p.cfg.state_dir, {"a0": "2005-01-01", "a1": "2012-01-01"})
    p.recluster()
    person = _person_of(p)
    assert person[("a0", 0)] != ann
    assert person[("a1", 0)] == ann == person[("a2", 0)]  # undated photos stay
