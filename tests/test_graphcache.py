"""The dlib graph cache: built once, never served damaged, never in the way."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon import fsutil
from daemon.indexer import graphcache


@pytest.fixture
def source(tmp_path: Path) -> Path:
    p = tmp_path / "net.dat"
    p.write_bytes(b"weights v1")
    return p


def _builder(calls: list[int], graph: bytes = b"graph-bytes"):
    def build() -> bytes:
        calls.append(1)
        return graph
    return build


def test_the_graph_is_built_once_then_read(source: Path, tmp_path: Path) -> None:
    calls: list[int] = []
    cache = tmp_path / "cache"
    assert graphcache.cached_graph(source, _builder(calls), cache) == b"graph-bytes"
    assert graphcache.cached_graph(source, _builder(calls), cache) == b"graph-bytes"
    assert len(calls) == 1
    assert [p.name for p in cache.iterdir() if p.name.startswith(fsutil.TMP_PREFIX)] == []


def test_a_changed_source_is_built_again(source: Path, tmp_path: Path) -> None:
    calls: list[int] = []
    cache = tmp_path / "cache"
    graphcache.cached_graph(source, _builder(calls), cache)
    source.write_bytes(b"weights v2, longer")
    assert graphcache.cached_graph(source, _builder(calls, b"new"), cache) == b"new"
    assert len(calls) == 2
    assert len(list(cache.iterdir())) == 1  # the old file's graph is gone, not piled up


def test_a_damaged_cache_is_never_served(source: Path, tmp_path: Path) -> None:
    calls: list[int] = []
    cache = tmp_path / "cache"
    graphcache.cached_graph(source, _builder(calls), cache)
    [kept] = list(cache.iterdir())
    data = bytearray(kept.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in a weight
    kept.write_bytes(bytes(data))
    assert graphcache.cached_graph(source, _builder(calls), cache) == b"graph-bytes"
    assert len(calls) == 2
    kept.write_bytes(b"short")  # cut
    assert graphcache.cached_graph(source, _builder(calls), cache) == b"graph-bytes"
    assert len(calls) == 3


def test_an_unwritable_cache_costs_only_the_build(source: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder would be")
    calls: list[int] = []
    assert graphcache.cached_graph(source, _builder(calls), blocker / "x") == b"graph-bytes"
    assert graphcache.cached_graph(source, _builder(calls), blocker / "x") == b"graph-bytes"
    assert len(calls) == 2


def test_systemd_cache_directory_comes_first(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    monkeypatch.setenv("CACHE_DIRECTORY", str(tmp_path / "sd"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert graphcache.cache_dir() == tmp_path / "sd"
    monkeypatch.delenv("CACHE_DIRECTORY")
    assert graphcache.cache_dir() == tmp_path / "xdg" / "facecluster"
