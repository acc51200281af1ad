"""The dlib network's ONNX graph, kept on disk between starts.

Why: each index worker read dlib's 22 MB ``.dat`` file and folded it into a graph at
every start, twice for a one-photo ``scan`` (two workers). Loading the network (graph
and ONNX Runtime session) took 0.166 s of CPU without the cache and 0.135 s with it
(medians of 8 interleaved processes, quiet 2-core VM): ~30 ms a worker. The graph is
a pure function of that file, so it is kept in the cache directory (systemd's
``CACHE_DIRECTORY``, else ``$XDG_CACHE_HOME``, else ``~/.cache``), named by the file's
path, size and modification time and by :data:`FORMAT`. A cached graph starts with the
SHA-256 of the rest, so a damaged file is never handed to the network: a wrong weight
would mean wrong embeddings, silently. Any failure to read or write the cache costs only
the conversion (logged at debug).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import structlog

from daemon.fsutil import atomic_writer

log = structlog.get_logger(__name__)

FORMAT = 1
"""Bump when :mod:`daemon.indexer.dlibnet` changes the graph it builds from a file."""


def cache_dir() -> Path:
    """Where the graph goes: systemd's cache directory, else the XDG one."""
    systemd = os.environ.get("CACHE_DIRECTORY", "").split(":")[0]
    if systemd:
        return Path(systemd)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "facecluster"


def _stem(source: Path) -> str:
    """The part of a cached graph's name that names its source file."""
    return f"{source.stem}-{hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:12]}"


def _name(source: Path) -> str:
    st = source.stat()
    return f"{_stem(source)}-{st.st_size}-{st.st_mtime_ns}-f{FORMAT}.onnx"


def _read(path: Path) -> bytes | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    digest, graph = data[:32], data[32:]
    if len(data) <= 32 or hashlib.sha256(graph).digest() != digest:
        log.debug("graph_cache_damaged", path=str(path))
        return None
    return graph


def _write(path: Path, graph: bytes, stem: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Whole or not at all: two workers may write at once.
    with atomic_writer(path, durable=False, mode=0o600) as f:
        f.write(hashlib.sha256(graph).digest())
        f.write(graph)
    for old in path.parent.glob(f"{stem}-*.onnx"):  # an older file or converter's: 22 MB
        if old != path:
            old.unlink(missing_ok=True)


def cached_graph(source: Path, build: Callable[[], bytes], directory: Path | None = None
                 ) -> bytes:
    """The graph ``build`` makes from ``source``, from the cache when it holds it."""
    try:
        path = (directory or cache_dir()) / _name(source)
    except OSError as e:  # the source's stat: let build() say what is wrong with it
        log.debug("graph_cache_unused", source=str(source), error=str(e))
        return build()
    graph = _read(path)
    if graph is not None:
        return graph
    graph = build()
    try:
        _write(path, graph, _stem(source))
    except OSError as e:
        log.debug("graph_cache_not_written", path=str(path), error=str(e))
    return graph
