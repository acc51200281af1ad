"""Pipeline stages on synthetic embeddings: no models needed, fast."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from daemon.cluster import with_eps
from daemon.config import from_dict
from daemon.indexer.types import Face, IndexedPhoto
from daemon.stages.people import People
from daemon.stages.pipeline import Pipeline

RNG = np.random.default_rng(7)


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


CENTRES = _unit(RNG.normal(size=(3, 128)))


def _face(person: int, spread: float = 0.02) -> Face:
    v = _unit(CENTRES[person] + RNG.normal(scale=spread, size=128))
    return Face((10.0, 10.0, 80.0, 80.0), (), 0.99, v)


@pytest.fixture()
def pipeline(tmp_path: Path):
    (tmp_path / "photos").mkdir()
    cfg = from_dict({"watch": ["photos"], "workers": 1}, tmp_path)
    with Pipeline(cfg, create=True) as p:
        yield p


def _add(p: Pipeline, name: str, people: list[int], spread: float = 0.02) -> list[int]:
    path = p.cfg.watch[0] / name
    path.write_bytes(name.encode())
    photo = IndexedPhoto(path, 100, 100, p.engine_id, tuple(_face(i, spread) for i in people))
    return p.store.save_indexed(path, 1, 1, name, photo)


def _persons(p: Pipeline, ids: list[int]) -> list[int | None]:
    by_id = {f.id: f.person_id for f in p.store.faces(ids=ids)}
    return [by_id[i] for i in ids]


def test_new_face_joins_its_person_at_once_and_strangers_wait(pipeline: Pipeline) -> None:
    known = [_add(pipeline, f"a{i}.jpg", [0])[0] for i in range(4)]
    known += [_add(pipeline, f"b{i}.jpg", [1])[0] for i in range(4)]
    pipeline.recluster()
    a, b = _persons(pipeline, known[:1])[0], _persons(pipeline, known[4:5])[0]
    assert a is not None and b is not None and a != b

    new_a = _add(pipeline, "new-a.jpg", [0])
    stranger = _add(pipeline, "stranger.jpg", [2])
    assert pipeline.assign_incremental(new_a + stranger) == 1
    assert _persons(pipeline, new_a + stranger) == [a, None]
    # The next new face is voted on with the one just added in the index.
    again = _add(pipeline, "new-a2.jpg", [0])
    assert pipeline.assign_incremental(again) == 1
    assert _persons(pipeline, again) == [a]


def test_a_stranger_seen_twice_is_a_person_at_once_and_keeps_the_id(pipeline: Pipeline) -> None:
    known = [_add(pipeline, f"a{i}.jpg", [0])[0] for i in range(4)]
    pipeline.recluster()
    a = _persons(pipeline, known[:1])[0]
    first = _add(pipeline, "s0.jpg", [2], spread=0.01)
    assert pipeline.assign_incremental(first) == 0  # one face of nobody known: it waits
    loose = _add(pipeline, "loose.jpg", [2], spread=0.04)  # ~0.45 away: it waits too
    assert pipeline.assign_incremental(loose) == 0
    second = _add(pipeline, "s1.jpg", [2], spread=0.01)
    # Without waiting for a full re-clustering, the two become a person of their own...
    assert pipeline.assign_incremental(second) == 2
    stranger = _persons(pipeline, first + second)
    assert stranger[0] is not None and stranger[0] == stranger[1] != a
    # ...whom the next new photo joins by the vote, and the full re-clustering keeps.
    third = _add(pipeline, "s2.jpg", [2], spread=0.01)
    assert pipeline.assign_incremental(third) == 1
    pipeline.recluster()
    assert _persons(pipeline, first + second + third) == [stranger[0]] * 3
    assert _persons(pipeline, known) == [a] * 4


def test_a_face_given_at_once_is_decided_afresh_by_the_full_clustering(
        pipeline: Pipeline, monkeypatch) -> None:
    known = [_add(pipeline, f"a{i}.jpg", [0], spread=0.01)[0] for i in range(4)]
    pipeline.recluster()
    a = _persons(pipeline, known[:1])[0]
    # A face 0.33 from the person's centre (their faces lie ~0.11 from it, ~0.16 apart).
    side = RNG.normal(size=128)
    side -= (side @ CENTRES[0]) * CENTRES[0]
    theta = 2 * np.arcsin(0.33 / 2)
    v = _unit(CENTRES[0] * np.cos(theta) + side / np.linalg.norm(side) * np.sin(theta))
    path = pipeline.cfg.watch[0] / "odd.jpg"
    path.write_bytes(b"odd")
    odd = pipeline.store.save_indexed(path, 1, 1, "odd", IndexedPhoto(
        path, 100, 100, pipeline.engine_id, (Face((10.0, 10.0, 80.0, 80.0), (), 0.99, v),)))
    assert pipeline.assign_incremental(odd) == 1 and _persons(pipeline, odd) == [a]
    # The full clustering (made stricter here) keeps the person but calls that face
    # noise: given at once, it leaves the person (not sticky, as a clustered face is).
    strict = with_eps(pipeline.cluster_params(), 0.25)
    monkeypatch.setattr(People, "cluster_params", lambda self: strict)
    pipeline.recluster()
    assert _persons(pipeline, known) == [a] * 4
    assert _persons(pipeline, odd) == [None]


def test_recluster_keeps_person_ids_stable(pipeline: Pipeline) -> None:
    ids = [_add(pipeline, f"a{i}.jpg", [0])[0] for i in range(3)]
    ids += [_add(pipeline, f"b{i}.jpg", [1])[0] for i in range(3)]
    pipeline.recluster()
    before = _persons(pipeline, ids)
    _add(pipeline, "c0.jpg", [2])
    _add(pipeline, "c1.jpg", [2])
    pipeline.recluster()
    assert _persons(pipeline, ids) == before


def test_labels_exclusion_keeps_a_photo_out_of_a_person(pipeline: Pipeline) -> None:
    ids = [_add(pipeline, f"a{i}.jpg", [0])[0] for i in range(4)]
    pipeline.recluster()
    person = _persons(pipeline, ids[:1])[0]
    pipeline.cfg.labels_file.write_text(
        f'[people]\nperson-{person:04d} = {{ name = "Ann", exclude = ["a3.jpg"] }}\n'
    )
    assert pipeline.reload_labels() is None
    pipeline.recluster()
    assert _persons(pipeline, ids) == [person, person, person, None]
    plans = {plan.folder: {p.name for p in plan.photos} for plan in pipeline.plans()}
    assert plans == {"Ann": {"a0.jpg", "a1.jpg", "a2.jpg"}}


def test_broken_labels_keep_the_last_good_ones(pipeline: Pipeline) -> None:
    pipeline.cfg.labels_file.write_text('[people]\nperson-0001 = "Ann"\n')
    assert pipeline.reload_labels() is None
    pipeline.cfg.labels_file.write_text('[people]\nperson-0001 = "Ann\n')
    error = pipeline.reload_labels()
    assert error is not None and "line 2" in error
    assert pipeline.labels.people[1].name == "Ann"
    assert pipeline.status().labels_error == error


def test_a_new_empty_photo_folder_is_not_reported_missing(pipeline: Pipeline) -> None:
    """The first run creates ./photos empty: no warning on every rescan (issue 10)."""
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        assert pipeline.discover() == []
    events = [e["event"] for e in logs]
    assert "watched_folder_missing" not in events
    assert "watched_folder_empty" in events


def test_an_emptied_folder_with_known_photos_is_reported_and_kept(pipeline: Pipeline) -> None:
    """An empty folder that held indexed photos looks like an unmounted share: warn, keep."""
    from structlog.testing import capture_logs

    _add(pipeline, "a.jpg", [0])
    (pipeline.cfg.watch[0] / "a.jpg").unlink()
    with capture_logs() as logs:
        pipeline.discover()
        pipeline.sync_missing()
    assert "watched_folder_missing" in [e["event"] for e in logs]
    assert pipeline.store.photo(pipeline.cfg.watch[0] / "a.jpg") is not None


def test_has_photos_under_looks_at_the_folder_only(pipeline: Pipeline) -> None:
    root = pipeline.cfg.watch[0]
    assert not pipeline.store.has_photos_under(root)
    _add(pipeline, "a.jpg", [0])
    assert pipeline.store.has_photos_under(root)
    assert pipeline.store.has_photos_under(str(root) + "/")
    assert not pipeline.store.has_photos_under(root / "sub")
    assert not pipeline.store.has_photos_under(root.parent / "phot")  # a prefix, not a folder
    assert not pipeline.store.has_photos_under(root.parent / "photos-other")


class _Indexer:
    """Indexes each photo into one face of person 0; records when it is told to stop."""

    def __init__(self, engine_id: str) -> None:
        self.engine_id = engine_id
        self.stopping = threading.Event()

    def start(self) -> _Indexer:
        return self

    def __enter__(self) -> _Indexer:
        return self

    def close(self) -> None:
        self.stopping.set()

    def describe(self) -> dict:
        return {"mode": "test"}

    def imap(self, paths, digests=None):  # noqa: ANN001, ANN201
        for p in paths:
            yield p, IndexedPhoto(p, 100, 100, self.engine_id, (_face(0),))


def test_scan_lets_the_workers_go_while_it_clusters_and_writes_albums(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Their exit (freeing the models) must not add to the command's time after the albums.
    (tmp_path / "photos").mkdir()
    for i in range(3):
        (tmp_path / "photos" / f"{i}.jpg").write_bytes(b"photo %d" % i)
    cfg = from_dict({"watch": ["photos"], "workers": 2}, tmp_path)
    seen: list[bool] = []
    with Pipeline(cfg, create=True, workers=_Indexer("")) as p:
        indexer = p._sync._pool
        indexer.engine_id = p.engine_id
        write = p.write_albums

        def write_albums():  # noqa: ANN202
            seen.append(indexer.stopping.wait(5.0))
            return write()

        monkeypatch.setattr(p, "write_albums", write_albums)
        report = p.scan()
    assert report.index.indexed == 3 and report.cluster.faces == 3
    assert seen == [True]
