"""The on-disk vector cache: one pair of append-only files per engine.

SQLite is the truth: every face row carries its embedding as a float32 BLOB. Reading a
million BLOBs through SQLite takes seconds and a lot of memory, so the store also keeps
a derived cache per engine that can be memory-mapped:

- ``vectors-<engine>.f32``: a 256-byte header (magic, dimension, engine id, pair nonce)
  followed by rows of ``float32[dim]``;
- ``vectors-<engine>.ids``: a 256-byte header followed by one ``int64`` face id per row,
  row *i* of the ids file naming row *i* of the vector file. Both headers carry the same
  random nonce, so a vector file is never read with the ids file of another generation.

The rule, applied under a file lock by :func:`load`:

1. Appends go to the vector file first, then to the ids file, each followed by fsync,
   and only after the SQLite transaction that created the faces committed. After a
   crash the files may disagree in length or end in a partial row: both are cut to the
   rows present in both.
2. The face ids SQLite considers live for the engine (ids only, cheap) are compared
   with the cache. Cache rows whose id is not live are dead (faces deleted since).
   When an id appears twice the later row wins. Live ids missing from the cache (a
   crash between commit and append, or a cache file deleted) are read from the BLOBs
   and appended.
3. A few rows are compared with their BLOBs; a mismatch, a bad header or an engine or
   dimension that does not fit means the cache is rebuilt from SQLite (and logged).
4. When more than :data:`COMPACT_DEAD_FRACTION` of the rows are dead, the files are
   rewritten (temporary file, fsync, rename) holding only the live rows in id order.
5. The result is aligned with the live ids in ascending order. When the cache holds
   exactly those rows in that order (the usual case: ids only grow), the vectors are a
   read-only memory map and nothing is copied; otherwise the live rows are gathered
   into memory.

Files are only ever replaced by rename or cut beyond rows that were complete, so a
memory map handed out earlier stays valid (POSIX semantics).
"""

from __future__ import annotations

import fcntl
import os
import re
import struct
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import structlog

log = structlog.get_logger(__name__)

COMPACT_DEAD_FRACTION = 0.3
"""Compact a cache file once more than this share of its rows belongs to deleted faces."""

SPOT_CHECKS = 8
"""How many cached rows are compared with their SQLite BLOB on each load."""

HEADER_SIZE = 256
_VEC_MAGIC = b"FCVEC\x00v1"
_IDS_MAGIC = b"FCIDS\x00v1"
_HEADER_FMT = "<8sIIQ"  # magic, dim, length of the engine id in bytes, pair nonce
_MAX_ENGINE_BYTES = HEADER_SIZE - struct.calcsize(_HEADER_FMT)
_LOCK_NAME = "vectors.lock"

Fetch = Callable[[np.ndarray | None], Iterable[tuple[np.ndarray, np.ndarray]]]
"""Reads embeddings from SQLite: given sorted face ids (or None for all live faces of
the engine, in id order) yields chunks of ``(ids int64[k], vecs float32[k, d])``."""


class VectorCacheError(Exception):
    """The cache files cannot be used as they are (bad header, wrong engine or size)."""


@dataclass(frozen=True)
class CachePaths:
    """The two files of one engine's cache."""

    vecs: Path
    ids: Path


def cache_paths(state_dir: Path, engine: str) -> CachePaths:
    """Where the cache files of ``engine`` live; the engine id is made file-name safe."""
    safe = re.sub(r"[^A-Za-z0-9._+-]", "_", engine)
    return CachePaths(state_dir / f"vectors-{safe}.f32", state_dir / f"vectors-{safe}.ids")


def max_cached_id(state_dir: Path) -> int:
    """The highest face id in any cache file, 0 if none.

    The store keeps its id counter above this so an id left in a cache by a crash
    (appended, then the commit lost) is never given to a different face.
    """
    best = 0
    for p in state_dir.glob("vectors-*.ids"):
        try:
            with open(p, "rb") as f:
                if f.read(len(_IDS_MAGIC)) != _IDS_MAGIC:
                    continue  # garbage must not push the id counter anywhere
            ids = np.fromfile(p, dtype="<i8", offset=HEADER_SIZE)
        except (OSError, ValueError):
            continue
        if ids.size:
            best = max(best, int(ids.max()))
    return best


@contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the state dir's cache files (other processes too)."""
    fd = os.open(state_dir / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _header(magic: bytes, dim: int, engine: str, nonce: int) -> bytes:
    name = engine.encode("utf-8")
    if len(name) > _MAX_ENGINE_BYTES:
        raise ValueError(f"engine id too long for the vector cache: {engine!r}")
    head = struct.pack(_HEADER_FMT, magic, dim, len(name), nonce) + name
    return head.ljust(HEADER_SIZE, b"\0")


def _read_header(path: Path, magic: bytes, engine: str) -> tuple[int, int]:
    """Return ``(dim, nonce)`` recorded in ``path``; raise VectorCacheError if unusable."""
    with open(path, "rb") as f:
        head = f.read(HEADER_SIZE)
    if len(head) < HEADER_SIZE:
        raise VectorCacheError(f"{path.name}: header cut short")
    got_magic, dim, n, nonce = struct.unpack_from(_HEADER_FMT, head)
    if got_magic != magic:
        raise VectorCacheError(f"{path.name}: not a vector cache file")
    name = head[struct.calcsize(_HEADER_FMT) : struct.calcsize(_HEADER_FMT) + n]
    if name != engine.encode("utf-8"):
        raise VectorCacheError(f"{path.name}: written for engine {name!r}, not {engine!r}")
    if dim <= 0:
        raise VectorCacheError(f"{path.name}: dimension {dim}")
    return int(dim), int(nonce)


def _open_consistent(paths: CachePaths, engine: str) -> tuple[int, int] | None:
    """Validate both files and cut them to their common complete rows.

    Returns ``(dim, rows)``, or None when the cache does not exist. Raises
    VectorCacheError when it exists but cannot be used.
    """
    have_vecs, have_ids = paths.vecs.exists(), paths.ids.exists()
    if not have_vecs and not have_ids:
        return None
    if have_vecs != have_ids:
        raise VectorCacheError("one of the two cache files is missing")
    dim, nonce = _read_header(paths.vecs, _VEC_MAGIC, engine)
    if _read_header(paths.ids, _IDS_MAGIC, engine) != (dim, nonce):
        raise VectorCacheError("the two cache files do not belong together")
    row = 4 * dim
    vec_bytes = paths.vecs.stat().st_size - HEADER_SIZE
    id_bytes = paths.ids.stat().st_size - HEADER_SIZE
    rows = min(vec_bytes // row, id_bytes // 8)
    if vec_bytes != rows * row or id_bytes != rows * 8:
        # A crash during an append: keep only rows complete in both files.
        log.warning(
            "vector_cache_truncated", engine=engine, rows=rows,
            vec_bytes=vec_bytes, id_bytes=id_bytes,
        )
        os.truncate(paths.vecs, HEADER_SIZE + rows * row)
        os.truncate(paths.ids, HEADER_SIZE + rows * 8)
    return dim, rows


def _create(paths: CachePaths, engine: str, dim: int) -> None:
    nonce = int.from_bytes(os.urandom(8), "little")
    for path, magic in ((paths.vecs, _VEC_MAGIC), (paths.ids, _IDS_MAGIC)):
        with open(path, "wb") as f:
            f.write(_header(magic, dim, engine, nonce))
            f.flush()
            os.fsync(f.fileno())


def _append_rows(paths: CachePaths, ids: np.ndarray, vecs: np.ndarray) -> None:
    """Append rows: vectors first, ids second, so an id never names a missing vector."""
    for path, data in ((paths.vecs, vecs), (paths.ids, ids)):
        with open(path, "ab") as f:
            f.write(data.tobytes())
            f.flush()
            os.fsync(f.fileno())


def _as_rows(ids: np.ndarray, vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids = np.ascontiguousarray(ids, dtype="<i8").reshape(-1)
    vecs = np.ascontiguousarray(vecs, dtype="<f4")
    if vecs.ndim != 2 or vecs.shape[0] != ids.shape[0]:
        raise ValueError(f"{ids.shape[0]} ids do not match vectors of shape {vecs.shape}")
    return ids, vecs


def append(state_dir: Path, engine: str, ids: np.ndarray, vecs: np.ndarray) -> None:
    """Append committed faces to ``engine``'s cache, creating it if needed.

    A cache that cannot be used is started afresh; :func:`load` later fills in the
    rows that are missing from SQLite.
    """
    ids, vecs = _as_rows(ids, vecs)
    if ids.size == 0:
        return
    paths = cache_paths(state_dir, engine)
    with _locked(state_dir):
        try:
            state = _open_consistent(paths, engine)
        except VectorCacheError as e:
            log.warning("vector_cache_reset", engine=engine, reason=str(e))
            state = None
        if state is None or state[0] != vecs.shape[1]:
            _create(paths, engine, vecs.shape[1])
        _append_rows(paths, ids, vecs)


def _read_ids(paths: CachePaths) -> np.ndarray:
    return np.fromfile(paths.ids, dtype="<i8", offset=HEADER_SIZE)


def _map_vecs(paths: CachePaths, dim: int, rows: int) -> np.ndarray:
    if rows == 0:
        return np.empty((0, dim), dtype=np.float32)
    mm = np.memmap(paths.vecs, dtype="<f4", mode="r", offset=HEADER_SIZE, shape=(rows, dim))
    return mm.view(np.ndarray)


def _last_occurrence(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique ids and, for each, the row of its last occurrence."""
    if ids.size < 2 or bool(np.all(ids[1:] > ids[:-1])):
        return ids, np.arange(ids.size)
    uniq, first_in_reversed = np.unique(ids[::-1], return_index=True)
    return uniq, ids.size - 1 - first_in_reversed


def _append_chunks(
    paths: CachePaths, chunks: Iterable[tuple[np.ndarray, np.ndarray]], dim: int
) -> None:
    """Append the rows of ``chunks`` of (ids, vectors), refusing vectors not ``dim`` long."""
    for ids, vecs in chunks:
        ids, vecs = _as_rows(ids, vecs)
        if vecs.shape[1] != dim:
            raise VectorCacheError(f"embeddings have dimension {vecs.shape[1]}, the cache {dim}")
        _append_rows(paths, ids, vecs)


def _rewrite(
    paths: CachePaths, engine: str, chunks: Iterable[tuple[np.ndarray, np.ndarray]], dim: int
) -> None:
    """Write a fresh cache from ``chunks`` beside the old one and swap it in."""
    tmp = CachePaths(paths.vecs.with_suffix(".f32.tmp"), paths.ids.with_suffix(".ids.tmp"))
    _create(tmp, engine, dim)
    _append_chunks(tmp, chunks, dim)
    # A crash between the two renames leaves files of different generations, which
    # the nonce check turns into a rebuild.
    os.replace(tmp.vecs, paths.vecs)
    os.replace(tmp.ids, paths.ids)


def _rebuild(paths: CachePaths, engine: str, fetch: Fetch, reason: str) -> None:
    """Replace the cache with every live row read from SQLite."""
    log.warning("vector_cache_rebuilding", engine=engine, reason=reason)
    chunks = iter(fetch(None))
    first = next(chunks, None)
    if first is None:
        for p in (paths.vecs, paths.ids):
            p.unlink(missing_ok=True)
        return
    dim = int(np.asarray(first[1]).shape[1])

    def all_chunks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        yield first
        yield from chunks

    _rewrite(paths, engine, all_chunks(), dim)
    log.info("vector_cache_rebuilt", engine=engine)


def _spot_check_ok(
    live: np.ndarray, vecs: np.ndarray, rows: np.ndarray, fetch: Fetch, rng: np.random.Generator
) -> bool:
    """Compare a few cached rows (always including the newest) with their BLOBs."""
    n = live.size
    picks = {n - 1, n - 2} | set(rng.integers(0, n, size=SPOT_CHECKS).tolist())
    sample = np.array(sorted(p for p in picks if 0 <= p < n), dtype=np.int64)
    want = {
        int(i): v for got_ids, got in fetch(live[sample]) for i, v in zip(got_ids, got, strict=True)
    }
    return all(
        int(live[k]) in want and np.array_equal(vecs[rows[k]], want[int(live[k])])
        for k in sample
    )


def _locate(file_ids: np.ndarray, live: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row of each live id in the cache (last occurrence), and a mask of those found."""
    uniq, where = _last_occurrence(file_ids)
    j = np.searchsorted(uniq, live)
    found = j < uniq.size
    found[found] = uniq[j[found]] == live[found]
    rows = np.full(live.size, -1, dtype=np.int64)
    rows[found] = where[j[found]]
    return rows, found


def _reconcile(
    paths: CachePaths, engine: str, live: np.ndarray, fetch: Fetch
) -> tuple[int, np.ndarray, np.ndarray]:
    """Bring the cache up to date with ``live``: ``(dim, cached ids, row of each live id)``."""
    state = _open_consistent(paths, engine)
    if state is None:
        raise VectorCacheError("no cache file")
    dim, n = state
    file_ids = _read_ids(paths)[:n]
    rows, found = _locate(file_ids, live)
    missing = live[~found]
    if missing.size:
        log.info("vector_cache_repairing", engine=engine, missing=int(missing.size))
        _append_chunks(paths, fetch(missing), dim)
        file_ids = _read_ids(paths)
        rows, found = _locate(file_ids, live)
        if not found.all():
            raise VectorCacheError(f"{int((~found).sum())} live faces have no stored embedding")
    return dim, file_ids, rows


def load(state_dir: Path, engine: str, live: np.ndarray, fetch: Fetch) -> np.ndarray:
    """Return the vectors of the ``live`` face ids (sorted ascending), row for row.

    ``fetch`` reads embeddings from SQLite to repair or rebuild the cache; see the module
    docstring for the rule. The result is read-only and may be a memory map. Raises
    VectorCacheError when even a cache rebuilt from SQLite does not fit ``live``.
    """
    live = np.ascontiguousarray(live, dtype=np.int64)
    paths = cache_paths(state_dir, engine)
    with _locked(state_dir):
        if live.size == 0:
            return _empty(paths, engine)
        try:
            dim, file_ids, rows = _reconcile(paths, engine, live, fetch)
            vecs = _map_vecs(paths, dim, file_ids.size)
            if not _spot_check_ok(live, vecs, rows, fetch, np.random.default_rng()):
                raise VectorCacheError("cached vectors differ from the database")
        except VectorCacheError as e:
            _rebuild(paths, engine, fetch, str(e))
            dim, file_ids, rows = _reconcile(paths, engine, live, fetch)
        dead = file_ids.size - live.size
        if dead > COMPACT_DEAD_FRACTION * file_ids.size:
            log.info("vector_cache_compacting", engine=engine, dead=dead, live=int(live.size))
            old = _map_vecs(paths, dim, file_ids.size)
            step = 65536
            _rewrite(
                paths, engine,
                ((live[i : i + step], old[rows[i : i + step]]) for i in range(0, live.size, step)),
                dim,
            )
            file_ids, rows = live, np.arange(live.size)
        vecs = _map_vecs(paths, dim, file_ids.size)
        if np.array_equal(file_ids, live):
            return vecs
        gathered = np.ascontiguousarray(vecs[rows])
        # Read-only like the map, so a caller that writes in place fails every time.
        gathered.flags.writeable = False
        return gathered


def _empty(paths: CachePaths, engine: str) -> np.ndarray:
    """No live faces: drop the cache and return an empty array of the cached dimension."""
    try:
        state = _open_consistent(paths, engine)
    except VectorCacheError:
        state = None
    for p in (paths.vecs, paths.ids):
        p.unlink(missing_ok=True)
    return np.empty((0, state[0] if state else 0), dtype=np.float32)
