"""Model manifest, verification and fetching. No test touches the network.

Synthetic "model" files are random bytes described by a manifest written into the test's
own models folder (a folder's own manifest takes precedence over the shipped one), and
"downloads" come from ``file://`` URLs.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from daemon.cli.commands import main
from daemon.indexer import models
from daemon.indexer.models import FetchError, ManifestError, MissingModelError

REPO = Path(__file__).resolve().parent.parent


def _write_manifest(models_dir: Path, entries: dict[str, dict]) -> None:
    lines = []
    for key, e in entries.items():
        lines.append(f"[{key}]")
        for name, value in e.items():
            if isinstance(value, list):
                lines.append(f"{name} = [{', '.join(repr(v) for v in value)}]")
            elif isinstance(value, int):
                lines.append(f"{name} = {value}")
            else:
                lines.append(f'{name} = "{value}"')
        lines.append("")
    (models_dir / "manifest.toml").write_text("\n".join(lines), encoding="utf-8")


def _entry(blob: bytes, filename: str, url: str, **extra) -> dict:
    return {
        "filename": filename,
        "url": url,
        "size": len(blob),
        "sha256": hashlib.sha256(blob).hexdigest(),
        "licence": "MIT",
        **extra,
    }


@pytest.fixture()
def blob() -> bytes:
    return os.urandom(3 * (1 << 20) + 17)  # several read chunks, not a chunk multiple


@pytest.fixture()
def setup(tmp_path: Path, blob: bytes) -> tuple[Path, Path]:
    """(models_dir, source_dir): a manifest for model "demo" whose URL serves ``blob``."""
    source = tmp_path / "source"
    source.mkdir()
    (source / "demo.onnx").write_bytes(blob)
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    url = (source / "demo.onnx").as_uri()
    _write_manifest(models_dir, {"demo": _entry(blob, "demo.onnx", url)})
    return models_dir, source


def _leftovers(models_dir: Path) -> list[str]:
    """Files other than the manifest and the hash cache."""
    keep = {"manifest.toml", models.HASH_CACHE_NAME}
    return sorted(p.name for p in models_dir.iterdir() if p.name not in keep)


def test_shipped_manifest_lists_yunet_and_sface() -> None:
    by_key = {m.key: m for m in models.load_manifest(REPO / "no-such-dir")}
    assert by_key["yunet"].filename == "face_detection_yunet_2023mar.onnx"
    assert by_key["yunet"].size == 232_589
    assert by_key["yunet"].sha256.startswith("8f2383e4dd3cfbb4")
    assert by_key["sface"].filename == "face_recognition_sface_2021dec.onnx"
    assert by_key["sface"].size == 38_696_353
    assert by_key["sface"].sha256.startswith("0ba9fbfa01b5270c96627c4e")
    for m in by_key.values():
        assert all(u.startswith("https://") for u in m.urls)
        assert m.licence and m.licence_url


def test_fetch_downloads_from_url(setup: tuple[Path, Path], blob: bytes) -> None:
    models_dir, _ = setup
    assert models.verified_model(models_dir, "demo") is None
    [result] = models.fetch(models_dir)
    assert (result.key, result.action) == ("demo", "downloaded")
    assert result.source and result.source.startswith("file://")
    assert (models_dir / "demo.onnx").read_bytes() == blob
    assert models.verified_model(models_dir, "demo") == models_dir / "demo.onnx"
    assert _leftovers(models_dir) == ["demo.onnx"]


def test_fetch_keeps_a_file_already_present(setup: tuple[Path, Path], blob: bytes) -> None:
    models_dir, source = setup
    (models_dir / "demo.onnx").write_bytes(blob)  # placed by hand
    (source / "demo.onnx").unlink()  # the URL no longer works: it must not be needed
    [result] = models.fetch(models_dir)
    assert result.action == "present"
    assert models.verified_model(models_dir, "demo") == models_dir / "demo.onnx"


def test_fetch_refuses_wrong_hash_and_leaves_nothing(setup: tuple[Path, Path]) -> None:
    models_dir, source = setup
    good = (source / "demo.onnx").read_bytes()
    (source / "demo.onnx").write_bytes(bytes(len(good)))  # same size, other content
    with pytest.raises(FetchError, match="sha256") as info:
        models.fetch(models_dir)
    assert "demo.onnx" in str(info.value)
    assert _leftovers(models_dir) == []


def test_fetch_refuses_oversized_download(setup: tuple[Path, Path]) -> None:
    models_dir, source = setup
    (source / "demo.onnx").write_bytes(os.urandom(5 * (1 << 20)))
    with pytest.raises(FetchError, match="more than the expected"):
        models.fetch(models_dir)
    assert _leftovers(models_dir) == []


def test_fetch_falls_back_to_a_mirror(tmp_path: Path, blob: bytes) -> None:
    good = tmp_path / "good.onnx"
    good.write_bytes(blob)
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    entry = _entry(blob, "demo.onnx", (tmp_path / "absent.onnx").as_uri(), mirrors=[good.as_uri()])
    _write_manifest(models_dir, {"demo": entry})
    [result] = models.fetch(models_dir)
    assert result.source == good.as_uri()
    assert models.verified_model(models_dir, "demo") is not None


def test_unreachable_url_gives_clear_error(tmp_path: Path, blob: bytes) -> None:
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    _write_manifest(models_dir, {"sface": _entry(blob, "sface.onnx", "http://127.0.0.1:9/sface.onnx")})
    with pytest.raises(MissingModelError) as info:
        models.fetch(models_dir, ["sface"], timeout=5)
    text = str(info.value)
    assert "sface.onnx" in text
    assert "http://127.0.0.1:9/sface.onnx" in text
    assert "by hand" in text
    assert "--from" in text
    assert 'embedder = "dlib"' in text
    assert _leftovers(models_dir) == []


def test_fetch_reports_partial_success(tmp_path: Path, blob: bytes) -> None:
    good = tmp_path / "a.onnx"
    good.write_bytes(blob)
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    _write_manifest(
        models_dir,
        {
            "a": _entry(blob, "a.onnx", good.as_uri()),
            "b": _entry(blob + b"x", "b.onnx", (tmp_path / "absent.onnx").as_uri()),
        },
    )
    with pytest.raises(FetchError) as info:
        models.fetch(models_dir)
    assert [r.model.key for r in info.value.results] == ["a"]
    assert "b.onnx" in str(info.value)
    assert "a.onnx" not in str(info.value)
    assert _leftovers(models_dir) == ["a.onnx"]


def test_fetch_from_source_dir(tmp_path: Path, blob: bytes) -> None:
    offline = tmp_path / "usb"
    offline.mkdir()
    (offline / "demo.onnx").write_bytes(blob)
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    # The URL would fail: with source_dir the network must not be used at all.
    _write_manifest(models_dir, {"demo": _entry(blob, "demo.onnx", "http://127.0.0.1:9/x")})
    [result] = models.fetch(models_dir, source_dir=offline)
    assert result.action == "copied"
    assert result.source == str(offline / "demo.onnx")
    assert (models_dir / "demo.onnx").read_bytes() == blob


def test_fetch_from_source_dir_missing_or_wrong(tmp_path: Path, blob: bytes) -> None:
    offline = tmp_path / "usb"
    offline.mkdir()
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    _write_manifest(models_dir, {"demo": _entry(blob, "demo.onnx", "http://127.0.0.1:9/x")})
    with pytest.raises(FetchError, match=r"demo\.onnx is not in"):
        models.fetch(models_dir, source_dir=offline)
    (offline / "demo.onnx").write_bytes(blob[:-1])
    with pytest.raises(FetchError, match="expected"):
        models.fetch(models_dir, source_dir=offline)
    assert _leftovers(models_dir) == []


def test_hand_placed_wrong_file_is_reported_and_not_used(setup: tuple[Path, Path]) -> None:
    models_dir, _ = setup
    size = models.load_manifest(models_dir)[0].size
    (models_dir / "demo.onnx").write_bytes(bytes(size))
    [status] = models.verify(models_dir)
    assert status.state == "wrong-hash"
    assert models.verified_model(models_dir, "demo") is None
    with pytest.raises(MissingModelError, match="wrong sha256"):
        models.require_model(models_dir, "demo")

    (models_dir / "demo.onnx").write_bytes(b"short")
    [status] = models.verify(models_dir)
    assert (status.state, status.actual_size) == ("wrong-size", 5)
    assert models.verified_model(models_dir, "demo") is None


def test_fetch_replaces_a_wrong_file(setup: tuple[Path, Path], blob: bytes) -> None:
    models_dir, _ = setup
    (models_dir / "demo.onnx").write_bytes(b"stale")
    [result] = models.fetch(models_dir)
    assert result.action == "downloaded"
    assert (models_dir / "demo.onnx").read_bytes() == blob


def test_verdict_cache_follows_file_changes(setup: tuple[Path, Path], blob: bytes) -> None:
    models_dir, _ = setup
    path = models_dir / "demo.onnx"
    path.write_bytes(blob)
    assert models.verified_model(models_dir, "demo") == path
    assert (models_dir / models.HASH_CACHE_NAME).is_file()
    # Same size, new content and mtime: the cached verdict must not be reused.
    path.write_bytes(bytes(len(blob)))
    os.utime(path, ns=(1, 1))
    assert models.verified_model(models_dir, "demo") is None


def test_disk_cache_avoids_rehashing(
    setup: tuple[Path, Path], blob: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    models_dir, _ = setup
    (models_dir / "demo.onnx").write_bytes(blob)
    assert models.verified_model(models_dir, "demo") is not None
    # A fresh process has an empty memory cache but finds the JSON verdict.
    monkeypatch.setattr(models, "_memory_cache", {})

    def no_hashing(path: Path) -> str:
        raise AssertionError(f"{path} was hashed again")

    monkeypatch.setattr(models, "sha256_file", no_hashing)
    assert models.verified_model(models_dir, "demo") == models_dir / "demo.onnx"


def test_unknown_key_and_bad_manifest(tmp_path: Path, blob: bytes) -> None:
    d = tmp_path / "models"
    d.mkdir()
    _write_manifest(d, {"demo": _entry(blob, "demo.onnx", "file:///x")})
    with pytest.raises(ManifestError, match="unknown model 'nope'"):
        models.verified_model(d, "nope")
    with pytest.raises(ManifestError, match="unknown model"):
        models.fetch(d, ["nope"])
    _write_manifest(d, {"demo": _entry(blob, "../escape.onnx", "file:///x")})
    with pytest.raises(ManifestError, match="plain file name"):
        models.load_manifest(d)
    _write_manifest(d, {"demo": {**_entry(blob, "d.onnx", "file:///x"), "sha256": "abc"}})
    with pytest.raises(ManifestError, match="sha256"):
        models.load_manifest(d)
    (d / "manifest.toml").write_text("[demo\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="cannot read"):
        models.load_manifest(d)


def test_list_models_rows(setup: tuple[Path, Path], blob: bytes, capsys) -> None:
    models_dir, _ = setup
    [row] = models.list_models(models_dir)
    assert (row.key, row.filename, row.size) == ("demo", "demo.onnx", len(blob))
    assert row.state == "missing"
    (models_dir / "demo.onnx").write_bytes(blob)
    [row] = models.list_models(models_dir)
    assert row.state == "ok"
    assert row.license == row.licence == "MIT"
    config = models_dir.parent / "config.toml"
    config.write_text(f'watch = ["photos"]\n[engine]\nmodels_dir = "{models_dir}"\n')
    assert main(["--config", str(config), "models", "list"]) == 0
    [line] = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("demo ")]
    assert line.split() == ["demo", "ok", "demo.onnx", f"{len(blob):,}", "MIT"]


def test_real_yunet_is_verified(models_dir: Path) -> None:
    """The shipped manifest accepts the real YuNet file and still reports SFace missing."""
    expected = models_dir / "face_detection_yunet_2023mar.onnx"
    assert models.verified_model(models_dir, "yunet") == expected
    assert models.verified_model(models_dir, "sface") is None
    states = {s.model.key: s.state for s in models.verify(models_dir)}
    assert states == {"yunet": "ok", "sface": "missing"}


def test_real_yunet_copied_from_source_dir(tmp_path: Path, yunet_file: Path) -> None:
    target = tmp_path / "fresh-models"
    [result] = models.fetch(target, ["yunet"], source_dir=yunet_file.parent)
    assert result.action == "copied"
    assert models.verified_model(target, "yunet") == target / yunet_file.name
