"""The cluster's TLS on loopback: `cluster certs` makes a CA and member certificates that
a served scheduler and its worker use; a peer without a certificate of that CA is refused."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

pytest.importorskip("distributed")
pytest.importorskip("cryptography")

from net import free_port

from daemon.config import load_config  # noqa: E402
from daemon.remote.certs import make_certs  # noqa: E402
from daemon.remote.indexer import ClusterIndexer  # noqa: E402


def _refused(address: str, security) -> bool:  # noqa: ANN001
    from distributed import Client

    try:
        Client(address, security=security, timeout=3).close()
    except (OSError, TimeoutError):
        return True
    return False


def test_certs_make_a_tls_cluster_that_refuses_strangers_and_outlives_its_scheduler(
    tmp_path: Path, models_dir: Path, testdata: Path
) -> None:
    from distributed.security import Security

    certs = tmp_path / "certs"
    written = make_certs(certs, ["service", "desk"])
    assert {p.name for p in written} == {"ca.pem", "service.pem", "service.key", "desk.pem",
                                         "desk.key"}
    assert stat.S_IMODE((certs / "desk.key").stat().st_mode) == 0o600
    ca_before = (certs / "ca.pem").read_bytes()
    make_certs(certs, ["laptop"])  # a later member joins the same CA
    assert (certs / "ca.pem").read_bytes() == ca_before
    strangers = tmp_path / "other"
    make_certs(strangers, ["intruder"])

    photos = tmp_path / "photos"
    photos.mkdir()
    people = sorted((testdata / "faces" / "lfw-dev").iterdir())[60:72]
    for i, person in enumerate(people):
        shutil.copy2(next(iter(sorted(person.iterdir()))), photos / f"{i:02d}.jpg")
    port = free_port()
    (tmp_path / "config.toml").write_text(
        f'watch = ["photos"]\nworkers = 1\n[engine]\ndetector = "yunet"\nembedder = "dlib"\n'
        f'models_dir = "{models_dir}"\n[cluster]\nscheduler = "serve"\n'
        f'listen = "127.0.0.1:{port}"\ntls_ca = "certs/ca.pem"\n'
        'tls_cert = "certs/service.pem"\ntls_key = "certs/service.key"\n')
    with ClusterIndexer(load_config(tmp_path / "config.toml"), lost_after=3.0) as indexer:
        assert indexer.lost is None
        address = indexer._client.scheduler.address
        assert address == f"tls://127.0.0.1:{port}"
        [(path, result)] = list(indexer.imap([photos / "00.jpg"]))
        assert path == photos / "00.jpg" and len(result.faces) == 1
        described = indexer.describe()  # indexed by its own TLS worker, not a fallback
        assert indexer.lost is None and not described["refused"], described
        assert len(described["workers"]) == 1
        assert _refused(f"tcp://127.0.0.1:{port}", None)
        assert _refused(address, Security(
            tls_ca_file=str(strangers / "ca.pem"), tls_client_cert=str(strangers / "intruder.pem"),
            tls_client_key=str(strangers / "intruder.key"), require_encryption=True))
        assert not _refused(address, Security(
            tls_ca_file=str(certs / "ca.pem"), tls_client_cert=str(certs / "desk.pem"),
            tls_client_key=str(certs / "desk.key"), require_encryption=True))

        # The scheduler goes away mid-run: every photo is still indexed, once, here.
        rest = sorted(photos.iterdir())[1:]
        got = []
        for path, result in indexer.imap(rest):
            got.append(path)
            assert len(result.faces) >= 1, path
            if len(got) == 1:
                indexer._cluster.close()
        assert sorted(got) == rest
        described = indexer.describe()
        assert described["mode"] == "local" and "scheduler" in described["lost"], described
