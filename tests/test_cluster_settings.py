"""``[cluster]`` and the cluster's addresses, checked before anything listens; no Dask
needed (the one test that starts `facecluster worker` skips without it)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from daemon.cli.status import _indexing_lines
from daemon.config import ConfigError, from_dict
from daemon.remote.fingerprint import Fingerprint
from daemon.remote.settings import is_loopback, parse_address, require_safe

REPO = Path(__file__).resolve().parent.parent


def _cfg(tmp_path: Path, cluster: dict):  # noqa: ANN202
    return from_dict({"cluster": cluster}, tmp_path)


@pytest.mark.parametrize("listen", ["0.0.0.0:8786", "192.168.1.10:8786", "nas.local:8786",
                                    "[::]:8786", "10.0.0.2"])
def test_a_lan_listener_without_tls_is_refused(tmp_path: Path, listen: str) -> None:
    with pytest.raises(ConfigError, match="unauthenticated"):
        _cfg(tmp_path, {"scheduler": "serve", "listen": listen})


def test_a_lan_listener_with_tls_files_is_accepted(tmp_path: Path) -> None:
    for name in ("ca.pem", "svc.pem", "svc.key"):
        (tmp_path / name).write_text("x")
    cfg = _cfg(tmp_path, {"scheduler": "serve", "listen": "0.0.0.0:8786", "tls_ca": "ca.pem",
                          "tls_cert": "svc.pem", "tls_key": "svc.key"})
    assert cfg.cluster.tls_ca == str(tmp_path / "ca.pem")  # resolved beside the config


def test_tls_files_go_together_and_must_exist(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    with pytest.raises(ConfigError, match="all or none"):
        _cfg(tmp_path, {"scheduler": "serve", "tls_ca": "ca.pem"})
    with pytest.raises(ConfigError, match="not a file"):
        _cfg(tmp_path, {"scheduler": "serve", "tls_ca": "ca.pem", "tls_cert": "no.pem",
                        "tls_key": "no.key"})


def test_a_plain_tcp_scheduler_on_the_lan_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not loopback"):
        _cfg(tmp_path, {"scheduler": "tcp://192.168.1.5:8786"})
    with pytest.raises(ConfigError, match="tls://"):
        _cfg(tmp_path, {"scheduler": "tls://127.0.0.1:8786"})  # no certificates
    assert _cfg(tmp_path, {"scheduler": "tcp://127.0.0.1:8786"}).cluster.scheduler


def test_loopback_is_the_default_and_path_maps_are_absolute(tmp_path: Path) -> None:
    assert _cfg(tmp_path, {"scheduler": "serve"}).cluster.listen == "127.0.0.1:8786"
    with pytest.raises(ConfigError, match="absolute"):
        _cfg(tmp_path, {"path_map": {"photos": "/mnt/nas/photos"}})
    with pytest.raises(ConfigError, match="table of non-empty strings"):
        _cfg(tmp_path, {"path_map": {"/volume1/photos": 3}})


def test_addresses() -> None:
    assert parse_address("tcp://127.0.0.1:8786").port == 8786
    assert str(parse_address("localhost")) == "tcp://localhost:8786"
    assert parse_address("tls://[::1]:9000").host == "::1"
    assert [is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "nas")] \
        == [True, True, True, False, False]
    with pytest.raises(ValueError, match="scheme"):
        parse_address("http://127.0.0.1:80")
    require_safe(parse_address("tls://10.0.0.1:8786"), tls=True, what="x")  # allowed
    with pytest.raises(ValueError):
        require_safe(parse_address("tls://10.0.0.1:8786"), tls=False, what="x")


def test_fingerprints_name_what_differs() -> None:
    a = Fingerprint("yunet+dlib", (("dlib-resnet", "a" * 64), ("yunet", "b" * 64)))
    b = Fingerprint("yunet+dlib", (("dlib-resnet", "c" * 64), ("yunet", "b" * 64)))
    assert a.differences(a) == []
    assert a.differences(b) == [f"model dlib-resnet sha256 {'c' * 12}… instead of {'a' * 12}…"]
    assert Fingerprint.from_dict(a.as_dict()) == a
    assert Fingerprint.from_dict({"nothing": 1}) is None


def test_status_lines_show_workers_and_a_lost_cluster() -> None:
    lines = _indexing_lines({"mode": "cluster", "scheduler": "tcp://127.0.0.1:8786",
                             "workers": [{"name": "desk", "photos_per_s": 3.5}],
                             "refused": {"tcp://x": "engine differs"}})
    assert ("  worker", "desk: 3.5 photos/s") in lines and lines[0][1].endswith("1 worker(s)")
    assert ("  refused", "tcp://x: engine differs") in lines
    lost = _indexing_lines({"mode": "local", "lost": "the scheduler is gone"})
    assert lost == [("cluster", "LOST, indexing on this machine: the scheduler is gone")]
    assert _indexing_lines({"mode": "local", "workers": 2}) == []


def test_without_the_table_dask_is_never_imported(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "config.toml").write_text('watch = ["photos"]\nworkers = 1\n')
    code = textwrap.dedent("""
        import sys
        from daemon.cli import main
        assert main(["--config", "config.toml", "scan"]) == 0
        from daemon.config import load_config
        from daemon.stages.pipeline import Pipeline
        with Pipeline(load_config("config.toml")) as p:
            p.index_photos(p.discover())
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed"))
        assert not loaded, loaded
        print("clean")
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, env={"PYTHONPATH": str(REPO), "PATH": ""})
    assert out.returncode == 0 and "clean" in out.stdout, out.stderr


def test_the_worker_refuses_a_lan_scheduler_without_tls(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    out = subprocess.run(
        [sys.executable, "-m", "daemon", "worker", "tcp://192.168.1.5:8786"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={"PYTHONPATH": str(REPO), "PATH": ""},
    )
    assert out.returncode == 2
    assert "not loopback" in out.stderr and "unauthenticated" in out.stderr
