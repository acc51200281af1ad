"""The face crop store: each face's picture (a small JPEG), beside its row in SQLite.

Written with the face by :meth:`Store.save_indexed` (the indexer cut it from the decode it
already held), copied with a byte-identical copy of its photo, and dropped with its face:
the table's foreign key cascades from ``faces``, so every way a face goes (re-index,
failure, deletion, rebuild) takes its crop along. A store made before crops existed, or
a face whose crop could not be cut, simply has none: the readers then decode the photo.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

SCHEMA = (
    """CREATE TABLE face_crops (
        face_id INTEGER PRIMARY KEY REFERENCES faces(id) ON DELETE CASCADE,
        jpeg BLOB NOT NULL
    )""",
)
"""Migration 3 of :data:`daemon.store.db.MIGRATIONS`."""
_CHUNK = 900  # ids per IN (...) list, below SQLite's historical 999-variable limit


def save(conn: sqlite3.Connection, rows: Iterable[tuple[int, bytes]]) -> None:
    """Store (face id, JPEG) pairs; empty crops are not stored."""
    conn.executemany(
        "INSERT OR REPLACE INTO face_crops (face_id, jpeg) VALUES (?, ?)",
        [(fid, data) for fid, data in rows if data],
    )


def copy(conn: sqlite3.Connection, pairs: Iterable[tuple[int, int]]) -> None:
    """Give each new face (second of a pair) the crop of its source face (first)."""
    conn.executemany(
        "INSERT OR REPLACE INTO face_crops (face_id, jpeg) "
        "SELECT ?, jpeg FROM face_crops WHERE face_id = ?",
        [(new, old) for old, new in pairs],
    )


def load(conn: sqlite3.Connection, ids: Sequence[int]) -> dict[int, bytes]:
    """face id -> JPEG for the faces of ``ids`` that have a crop.

    A store whose schema predates crops (a read-only reader of an older store) has none.
    """
    out: dict[int, bytes] = {}
    for i in range(0, len(ids), _CHUNK):
        chunk = [int(x) for x in ids[i : i + _CHUNK]]
        marks = ",".join("?" * len(chunk))
        try:
            rows = conn.execute(
                f"SELECT face_id, jpeg FROM face_crops WHERE face_id IN ({marks})", chunk
            ).fetchall()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return {}
            raise
        out.update((int(fid), bytes(data)) for fid, data in rows)
    return out
