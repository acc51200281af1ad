"""Indexing on a Dask cluster, on loopback: a served scheduler and two `facecluster worker`
processes against the local pool; a worker killed mid-run; a photo that kills workers; a
worker with another engine. Skipped without the ``cluster`` extra or the shared photos.

One scheduler and two workers serve the whole module (starting them is most of its time).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from net import free_port  # noqa: E402

from daemon.config import Config, load_config  # noqa: E402
from daemon.remote.indexer import ClusterIndexer  # noqa: E402
from daemon.stages.pipeline import Pipeline  # noqa: E402
from daemon.stages.sync import given_up  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
POISON_PRELOAD = Path(__file__).resolve().parent / "cluster_poison.py"
KNOWN = ["biden", "obama", "kit_harington", "rose_leslie"]


def _config(root: Path, models: Path, *, engine: str = "yunet", cluster: str = "") -> Path:
    text = (
        'watch = ["photos"]\nalbums_dir = "albums"\nstate_dir = "state"\n'
        'labels_file = "labels.toml"\nworkers = 1\n'
        f'[engine]\ndetector = "{engine}"\nembedder = "dlib"\nmodels_dir = "{models}"\n'
        + cluster
    )
    (root / "config.toml").write_text(text)
    return root / "config.toml"


class Borrowed:
    """The module's indexer lent to one pipeline, which must not close it."""

    def __init__(self, indexer: ClusterIndexer) -> None:
        self.indexer = indexer
        self.engine_id = indexer.engine_id

    def start(self) -> Borrowed:
        return self

    def __enter__(self) -> Borrowed:
        return self

    def close(self) -> None:
        pass

    def describe(self) -> dict:
        return self.indexer.describe()

    def imap(self, paths, digests=None):  # noqa: ANN001, ANN201
        return self.indexer.imap(paths, digests)


class Cluster:
    def __init__(self, root: Path, models: Path, cfg: Config, indexer: ClusterIndexer) -> None:
        self.root, self.models, self.cfg, self.indexer = root, models, cfg, indexer
        self.workers: list[subprocess.Popen] = []

    @property
    def address(self) -> str:
        return self.indexer._client.scheduler.address

    def start_worker(self, config: Path, log: Path) -> subprocess.Popen:
        env = {**os.environ, "DASK_DISTRIBUTED__WORKER__PRELOAD": f'["{POISON_PRELOAD}"]'}
        cmd = [sys.executable, "-m", "daemon", "--config", str(config), "worker",
               self.address, "--processes", "1"]
        p = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                             stderr=log.open("wb"))
        self.workers.append(p)
        return p

    def worker_pids(self) -> dict[str, int]:
        return self.indexer._client.run(os.getpid)

    def library(self, name: str, files: dict[str, Path]) -> Config:
        """A fresh photo folder and state, indexed through the module's cluster."""
        d = self.root / name
        for rel, src in files.items():
            (d / "photos" / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, d / "photos" / rel)
        return load_config(_config(d, self.models))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, yunet_file: Path) -> Iterator[Cluster]:
    import dask

    root = tmp_path_factory.mktemp("cluster")
    models = root / "models"
    models.mkdir()
    shutil.copy2(yunet_file, models / yunet_file.name)
    port = free_port()
    table = f'[cluster]\nscheduler = "serve"\nlisten = "127.0.0.1:{port}"\nindex_here = false\n'
    cfg = load_config(_config(root, models, cluster=table))
    # A poison photo gives up after killing two workers (Dask's default allows three).
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        indexer = ClusterIndexer(cfg).start()
        c = Cluster(root, models, cfg, indexer)
        try:
            for i in (1, 2):
                c.start_worker(root / "config.toml", root / f"worker{i}.log")
            indexer._client.wait_for_workers(2, timeout=120)
            yield c
        finally:
            for p in c.workers:
                p.send_signal(signal.SIGTERM)
            for p in c.workers:
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
            indexer.close()


def _scan(cfg: Config, workers: Borrowed | None = None, progress=None) -> Pipeline:  # noqa: ANN001
    p = Pipeline(cfg, create=True, workers=workers)
    found = p.discover()
    p.index_photos(found, progress)
    p.recluster()
    p.write_albums()
    return p


def _faces(p: Pipeline, root: Path) -> dict[str, list[tuple[tuple, np.ndarray]]]:
    faces = p.store.faces()
    vecs = p.store.face_vectors([f.id for f in faces])
    out: dict[str, list] = {}
    for f, v in zip(faces, vecs, strict=True):
        out.setdefault(str(f.path.relative_to(root)), []).append((f.box, v))
    return {k: sorted(v, key=lambda fv: fv[0]) for k, v in out.items()}


def _albums(albums: Path) -> set[frozenset[str]]:
    return {
        frozenset(Path(os.path.realpath(e)).name for e in d.iterdir())
        for d in albums.iterdir()
        if d.is_dir() and not d.name.startswith(".")
    }


def test_two_workers_index_like_the_local_pool(cluster: Cluster, shared_photos: Path) -> None:
    files = {f"{person}/{p.name}": p for person in KNOWN
             for p in sorted((shared_photos / "known" / person).iterdir())}
    files["groups/obama_and_biden.jpg"] = shared_photos / "groups" / "obama_and_biden.jpg"
    files["none/" + "park.jpg"] = next(iter(sorted((shared_photos / "no-faces").iterdir())))
    remote_cfg = cluster.library("remote", files)
    local_cfg = cluster.library("local", files)
    with _scan(remote_cfg, Borrowed(cluster.indexer)) as remote, _scan(local_cfg) as local:
        theirs = _faces(remote, remote_cfg.watch[0])
        ours = _faces(local, local_cfg.watch[0])
        assert remote.status().photos == local.status().photos
        assert remote.store.counts().photos_failed == 0
    assert theirs.keys() == ours.keys() and len(ours) >= 10
    for name, faces in ours.items():
        assert len(theirs[name]) == len(faces), name
        for (box_a, vec_a), (box_b, vec_b) in zip(faces, theirs[name], strict=True):
            assert np.max(np.abs(np.subtract(box_a, box_b))) <= 2.0, name
            np.testing.assert_allclose(vec_a, vec_b, atol=1e-5, err_msg=name)
    assert _albums(remote_cfg.albums_dir) == _albums(local_cfg.albums_dir)
    assert len(_albums(local_cfg.albums_dir)) >= 3
    served = cluster.indexer.describe()
    assert served["mode"] == "cluster" and len(served["workers"]) == 2
    assert sum(w["photos_per_s"] > 0 for w in served["workers"]) >= 1


def _lfw(testdata: Path, n: int, skip: int = 0) -> dict[str, Path]:
    people = sorted((testdata / "faces" / "lfw-dev").iterdir())[skip:skip + n]
    return {f"{d.name}.jpg": next(iter(sorted(d.iterdir()))) for d in people}


def test_a_worker_killed_mid_run_loses_and_doubles_no_photo(
    cluster: Cluster, testdata: Path
) -> None:
    files = _lfw(testdata, 40)
    cfg = cluster.library("killed", files)
    local_cfg = cluster.library("killed-local", files)
    victim = next(iter(cluster.worker_pids().values()))
    done: list[int] = []

    def progress(n: int) -> None:
        done.append(n)
        if len(done) == 8:  # mid-run: the victim holds a photo (two in flight per worker)
            os.kill(victim, signal.SIGKILL)

    with _scan(cfg, Borrowed(cluster.indexer), progress) as remote, _scan(local_cfg) as local:
        records = list(remote.store.iter_photos())
        theirs = {k: len(v) for k, v in _faces(remote, cfg.watch[0]).items()}
        ours = {k: len(v) for k, v in _faces(local, local_cfg.watch[0]).items()}
    assert len(done) == len(files)
    assert sorted(r.path.name for r in records) == sorted(files)  # each stored once
    assert all(r.status == "indexed" for r in records), [r.error for r in records]
    assert theirs == ours
    assert victim not in cluster.worker_pids().values()  # it really died (and came back)


def test_a_photo_that_kills_workers_ends_failed_with_its_reason(
    cluster: Cluster, testdata: Path
) -> None:
    # Photos queued beside the poison one on a dying worker are blamed by Dask too
    # (KilledWorker): each must be tried again alone and end indexed.
    files = _lfw(testdata, 12, skip=40)
    files["poison.jpg"] = next(iter(_lfw(testdata, 1, skip=52).values()))
    cfg = cluster.library("poison", files)
    cluster.indexer._client.wait_for_workers(2, timeout=120)
    with _scan(cfg, Borrowed(cluster.indexer)) as p:
        records = {r.path.name: r for r in p.store.iter_photos()}
    poison = records.pop("poison.jpg")
    assert poison.status == "failed" and given_up(poison)
    assert "killed 2 index workers" in (poison.error or "")
    assert all(r.status == "indexed" for r in records.values())
    cluster.indexer._client.wait_for_workers(2, timeout=120)  # the nannies restart them


def test_a_photo_that_hangs_a_worker_ends_failed_and_the_worker_restarts(
    cluster: Cluster, tmp_path: Path
) -> None:
    # A FIFO without a writer blocks whoever opens it: a stand-in for a hung native call.
    stuck = tmp_path / "stuck.jpg"
    os.mkfifo(stuck)
    cluster.indexer._client.wait_for_workers(2, timeout=120)
    before = set(cluster.worker_pids().values())
    cluster.indexer.task_timeout = 5.0
    try:
        [(path, result)] = list(cluster.indexer.imap([stuck], {stuck: "0" * 64}))
    finally:
        cluster.indexer.task_timeout = 600.0
    assert path == stuck and "took over 5 s" in result.reason
    cluster.indexer._client.wait_for_workers(2, timeout=120)
    assert len(before - set(cluster.worker_pids().values())) == 1  # the stuck one restarted


def test_a_worker_with_another_engine_is_refused(cluster: Cluster) -> None:
    other = cluster.root / "hog"
    other.mkdir()
    log = other / "worker.log"
    p = cluster.start_worker(_config(other, cluster.models, engine="dlib-hog"), log)
    assert p.wait(90) == 2
    text = log.read_text()
    assert "worker refused" in text and "dlib-hog" in text and "yunet" in text


def test_without_a_scheduler_the_local_pool_indexes(tmp_path: Path, models_dir: Path,
                                                    testdata: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, src in _lfw(testdata, 2, skip=50).items():
        shutil.copy2(src, photos / name)
    port = free_port()  # nothing listens there
    cfg = load_config(_config(tmp_path, models_dir, cluster=(
        f'[cluster]\nscheduler = "tcp://127.0.0.1:{port}"\n')))
    indexer = ClusterIndexer(cfg, connect_timeout=2.0)
    with indexer:
        results = list(indexer.imap(sorted(photos.iterdir())))
        described = indexer.describe()
    assert len(results) == 2 and all(r.faces for _, r in results)
    assert described["mode"] == "local" and "cannot reach the scheduler" in described["lost"]


def test_the_served_scheduler_listens_on_loopback_only(cluster: Cluster) -> None:
    """What the kernel has bound, not what the config says: the scheduler (and Dask's
    status pages) serve from this process, and every socket it listens on is loopback."""
    import ipaddress

    import psutil  # distributed depends on it

    port = int(cluster.address.rsplit(":", 1)[1])
    listening = [c.laddr for c in psutil.Process().net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN]
    assert port in {a.port for a in listening}
    assert all(ipaddress.ip_address(a.ip).is_loopback for a in listening), listening
    info = cluster.indexer._client.scheduler_info()
    for w in info["workers"].values():
        assert w["host"] == "127.0.0.1"



def test_a_served_scheduler_without_workers_stays_up_while_this_machine_indexes(
    tmp_path: Path, models_dir: Path, testdata: Path
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, src in _lfw(testdata, 1, skip=55).items():
        shutil.copy2(src, photos / name)
    cfg = load_config(_config(tmp_path, models_dir, cluster=(
        f'[cluster]\nscheduler = "serve"\nlisten = "127.0.0.1:{free_port()}"\n'
        "index_here = false\n")))
    with ClusterIndexer(cfg, lost_after=2.0) as indexer:
        [(_, result)] = list(indexer.imap(sorted(photos.iterdir())))
        described = indexer.describe()
    assert len(result.faces) == 1
    assert described["lost"] == "the cluster has no workers" and described["mode"] == "local"
    assert described["scheduler"].startswith("tcp://127.0.0.1:")  # still there to join


def test_path_mapping_takes_the_longest_matching_folder() -> None:
    from daemon.remote.task import map_path

    m = {"/volume1/photos": "/mnt/nas/photos", "/volume1/photos/2019": "/mnt/old/2019/"}
    assert map_path("/volume1/photos/a/b.jpg", m) == "/mnt/nas/photos/a/b.jpg"
    assert map_path("/volume1/photos/2019/c.jpg", m) == "/mnt/old/2019/c.jpg"
    assert map_path("/volume1/photos2/d.jpg", m) == "/volume1/photos2/d.jpg"  # not a prefix
    assert map_path("/elsewhere/e.jpg", {}) == "/elsewhere/e.jpg"


def test_a_task_that_killed_workers_has_its_photos_judged_only_alone(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from distributed.scheduler import KilledWorker

    from daemon.remote.indexer import _Sent

    (tmp_path / "config.toml").write_text('[cluster]\nscheduler = "serve"\n')
    indexer = ClusterIndexer(load_config(tmp_path / "config.toml"))  # never connected
    resent: list[list[Path]] = []
    indexer._send = lambda sent, batch, data=None: resent.append([s.path for s in batch])
    killed = KilledWorker("index_task-1", SimpleNamespace(address="tcp://127.0.0.1:1"), 2)
    failed = SimpleNamespace(status="error", exception=lambda: killed)
    batch = [_Sent(Path("/p/a.jpg"), "a"), _Sent(Path("/p/b.jpg"), "b")]
    assert list(indexer._settle(failed, None, batch, {})) == []
    assert resent == [] and indexer._suspects == batch  # each to be tried alone, later
    indexer._suspects = []
    # Alone in its task, but others were out: Dask blames all a dying worker held.
    assert list(indexer._settle(failed, None, batch[:1], {})) == []
    assert indexer._suspects == batch[:1]
    broken = SimpleNamespace(status="error", exception=lambda: RuntimeError("bug"))
    assert list(indexer._settle(broken, None, batch, {})) == []  # not a death: split
    assert resent == [[Path("/p/a.jpg")], [Path("/p/b.jpg")]]
    suspect = _Sent(Path("/p/a.jpg"), "a", alone=True)  # tried with nothing else out
    [(path, error)] = list(indexer._settle(failed, None, [suspect], {}))
    assert path == Path("/p/a.jpg") and "killed 3 index workers" in error.reason


def test_a_photo_handed_back_is_not_counted_for_the_worker(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from daemon.indexer.types import IndexedPhoto
    from daemon.remote.indexer import _Sent
    from daemon.remote.task import NeedBytes

    (tmp_path / "config.toml").write_text('[cluster]\nscheduler = "serve"\n')
    indexer = ClusterIndexer(load_config(tmp_path / "config.toml"))  # never connected
    resent: list[list[Path]] = []
    indexer._send = lambda sent, batch, data=None: resent.append([s.path for s in batch])
    seen = tmp_path / "seen.jpg"
    unseen = tmp_path / "unseen.jpg"
    unseen.write_bytes(b"bytes the worker could not see")
    done = IndexedPhoto(seen, 10, 10, "engine", ())
    finished = SimpleNamespace(status="finished")
    batch = [_Sent(seen, "a"), _Sent(unseen, "b")]
    value = ("tcp://127.0.0.1:1", [done, NeedBytes("cannot read it")], 0.5)
    assert list(indexer._settle(finished, value, batch, {})) == [(seen, done)]
    assert resent == [[unseen]]
    assert indexer._rates.total("tcp://127.0.0.1:1") == 1  # the ended photo only
