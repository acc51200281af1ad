"""The SQLite store: photos, faces (with their embeddings), people and settings.

One database, ``state_dir/facecluster.sqlite3``, in WAL mode so a ``facecluster status``
can read while the service writes. It is the truth: every face keeps its embedding as a
float32 BLOB. The per-engine vector files (see :mod:`daemon.store.vectors`) are only a
cache that :meth:`Store.vectors` keeps in step and rebuilds when needed.

Paths are stored as the bytes of the absolute path (``os.fsencode``), so file names that
are not valid UTF-8 round-trip exactly. Face and person ids come from AUTOINCREMENT
columns and are never reused; the face counter is also kept above any id found in a
vector cache, because a commit lost in a crash rolls the counter back.

Every write method is atomic. Writes outside :meth:`Store.batch` commit at once; inside,
they commit together when the outermost batch ends (each method still runs under a
savepoint, so one failing call leaves no half-done change behind).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import structlog

from daemon.indexer.types import IndexedPhoto
from daemon.store import crops as face_crops
from daemon.store import vectors as vector_cache

log = structlog.get_logger(__name__)

DB_NAME = "facecluster.sqlite3"
PhotoStatus = Literal["indexed", "failed"]

_CHUNK = 900  # ids per IN (...) list, below SQLite's historical 999-variable limit
_FETCH_ROWS = 65536  # rows per chunk when streaming embeddings out of SQLite

# One tuple of statements per schema version; PRAGMA user_version counts those applied.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE photos (
            id INTEGER PRIMARY KEY,
            path BLOB NOT NULL UNIQUE,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            content_hash TEXT,
            status TEXT NOT NULL CHECK (status IN ('indexed', 'failed')),
            error TEXT,
            transient INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            engine TEXT,
            width INTEGER,
            height INTEGER,
            updated_at REAL NOT NULL
        )""",
        "CREATE INDEX photos_content_hash ON photos(content_hash)",
        """CREATE TABLE people (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created_at REAL NOT NULL,
            retired_at REAL
        )""",
        """CREATE TABLE faces (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
            x REAL NOT NULL, y REAL NOT NULL, w REAL NOT NULL, h REAL NOT NULL,
            landmarks TEXT NOT NULL,
            score REAL NOT NULL,
            engine TEXT NOT NULL,
            person_id INTEGER REFERENCES people(id),
            embedding BLOB NOT NULL
        )""",
        "CREATE INDEX faces_photo ON faces(photo_id)",
        "CREATE INDEX faces_person ON faces(person_id)",
        "CREATE INDEX faces_engine ON faces(engine)",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ),
    # Counting each person's faces and photos read every face row, embedding and all
    # (3.5 s at 500k faces); from this index alone it takes 0.4 s (bench/web.py).
    ("CREATE INDEX faces_person_photo ON faces(person_id, photo_id)",),
    # Each face's picture, so album and web pictures need not decode photos (issue 23).
    face_crops.SCHEMA,
)


class StoreError(Exception):
    """The database cannot be opened, read or written; the message says what to do."""


class PhotoNotFoundError(StoreError):
    """A photo the caller named is not in the store."""


@dataclass(frozen=True)
class PhotoRecord:
    """One photo as the store knows it."""

    id: int
    path: Path
    size: int
    mtime_ns: int
    content_hash: str | None
    status: PhotoStatus
    error: str | None
    """Why indexing failed (status ``failed``), else None."""
    transient: bool
    """Whether a failure may go away when tried again."""
    attempts: int
    """Failed attempts since the last success."""
    engine: str | None
    width: int | None
    height: int | None
    updated_at: float
    face_count: int


@dataclass(frozen=True)
class FaceRecord:
    """One stored face, without its embedding (use :meth:`Store.vectors`)."""

    id: int
    photo_id: int
    path: Path
    box: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...]
    score: float
    engine: str
    person_id: int | None


@dataclass(frozen=True)
class PersonRecord:
    """A person id with how many faces and photos currently carry it."""

    id: int
    created_at: float
    retired_at: float | None
    retired: bool
    face_count: int
    photo_count: int


@dataclass(frozen=True)
class FaceKeyRow:
    """What anchors a face across re-derivations: its photo's bytes and its box."""

    id: int
    photo_id: int
    person_id: int | None
    content_hash: str | None
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class StoreCounts:
    """Totals for ``facecluster status``."""

    photos_indexed: int
    photos_failed: int
    faces: int
    faces_by_engine: dict[str, int]
    people: int
    """People that have at least one face."""


def _path_key(path: os.PathLike[str] | str) -> bytes:
    """The stored form of a path: bytes of the absolute path, exact for any file name."""
    return os.fsencode(os.path.abspath(os.fspath(path)))


def _path_of(key: bytes) -> Path:
    return Path(os.fsdecode(key))


# A photo row's columns, once: every statement below that reads or writes them is built
# from this list, so a new column cannot be forgotten in one of them.
_PHOTO_FIELDS = (
    "path", "size", "mtime_ns", "content_hash", "status", "error", "transient", "attempts",
    "engine", "width", "height", "updated_at",
)
_PHOTO_COLUMNS = (
    "p.id, " + ", ".join(f"p.{c}" for c in _PHOTO_FIELDS)
    + ", (SELECT COUNT(*) FROM faces f WHERE f.photo_id = p.id)"
)
# Recording an indexing or a failure: the row takes every new value, except that failed
# attempts are counted (a success resets the count).
_UPSERT_PHOTO = (
    f"INSERT INTO photos ({', '.join(_PHOTO_FIELDS)})"
    f" VALUES ({', '.join('?' * len(_PHOTO_FIELDS))})"
    " ON CONFLICT(path) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _PHOTO_FIELDS if c not in ("path", "attempts"))
    + ", attempts = CASE WHEN excluded.status = 'failed' THEN photos.attempts + 1 ELSE 0 END"
    " RETURNING id"
)
# A copy: the file's own path, size, mtime and time of recording, the rest from the source.
_COPY_OWN = ("path", "size", "mtime_ns", "updated_at")
_COPY_PHOTO = (
    f"INSERT INTO photos ({', '.join(_PHOTO_FIELDS)}) SELECT "
    + ", ".join("?" if c in _COPY_OWN else c for c in _PHOTO_FIELDS)
    + " FROM photos WHERE id = ? RETURNING id"
)

_FACE_COLUMNS = (
    "f.id, f.photo_id, p.path, f.x, f.y, f.w, f.h, f.landmarks, f.score, f.engine, f.person_id"
)


def _photo(row: Sequence) -> PhotoRecord:
    return PhotoRecord(
        id=row[0], path=_path_of(row[1]), size=row[2], mtime_ns=row[3], content_hash=row[4],
        status=row[5], error=row[6], transient=bool(row[7]), attempts=row[8], engine=row[9],
        width=row[10], height=row[11], updated_at=row[12], face_count=row[13],
    )


def _face(row: Sequence) -> FaceRecord:
    return FaceRecord(
        id=row[0], photo_id=row[1], path=_path_of(row[2]),
        box=(row[3], row[4], row[5], row[6]),
        landmarks=tuple((float(x), float(y)) for x, y in json.loads(row[7])),
        score=row[8], engine=row[9], person_id=row[10],
    )


def _chunks(ids: Sequence[int], size: int = _CHUNK) -> Iterator[list[int]]:
    for i in range(0, len(ids), size):
        yield [int(x) for x in ids[i : i + size]]


class Store:
    """The open state database plus its vector caches. Use :meth:`open`.

    Safe to share between threads (calls are serialised); a :meth:`batch` holds the
    store for its whole duration.
    """

    def __init__(self, state_dir: Path, conn: sqlite3.Connection) -> None:
        self.state_dir = state_dir
        self.db_path = state_dir / DB_NAME
        self._conn = conn
        self._lock = threading.RLock()
        self._depth = 0
        self._pending: list[tuple[str, np.ndarray, np.ndarray]] = []

    # -- opening and closing -------------------------------------------------------

    @classmethod
    def open(cls, state_dir: Path) -> Store:
        """Open (creating if needed) the store in ``state_dir``.

        The folder is created with mode 0700: embeddings are biometric data. Raises
        :class:`StoreError` when the database is damaged, not a database, or written by
        a newer version.
        """
        state_dir = Path(os.path.abspath(state_dir))
        try:
            if not state_dir.exists():
                state_dir.mkdir(mode=0o700, parents=True)
                os.chmod(state_dir, 0o700)  # mkdir's mode is filtered by the umask
        except OSError as e:
            raise StoreError(f"cannot create state folder {state_dir}: {e}") from e
        db_path = state_dir / DB_NAME
        try:
            conn = sqlite3.connect(
                db_path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
        except sqlite3.Error as e:
            raise StoreError(f"cannot open {db_path}: {e}") from e
        store = cls(state_dir, conn)
        try:
            with store._errors():
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if mode.lower() != "wal":
                    log.warning("store_not_wal", path=str(db_path), journal_mode=mode)
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA foreign_keys=ON")
                store._migrate()
                store._keep_face_ids_above_cache()
        except BaseException:
            conn.close()
            raise
        log.debug("store_opened", path=str(db_path))
        return store

    @classmethod
    def open_readonly(cls, state_dir: Path) -> Store:
        """Open an existing store for reading only: never creates, migrates or writes.

        For readers beside the writer (the web page). Raises :class:`StoreError` when
        there is no store yet or its schema is not this version's.
        """
        db_path = Path(os.path.abspath(state_dir)) / DB_NAME
        if not db_path.is_file():
            raise StoreError(f"no store at {db_path}: run `facecluster scan` first")
        try:
            conn = sqlite3.connect(
                f"{db_path.as_uri()}?mode=ro", uri=True, isolation_level=None,
                check_same_thread=False, timeout=30.0,
            )
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as e:
            raise StoreError(f"cannot read {db_path}: {e}") from e
        if not 1 <= version <= len(MIGRATIONS):  # older ones lack an index, the crops
            conn.close()
            raise StoreError(f"{db_path} has schema version {version}, this facecluster "
                             f"reads 1 to {len(MIGRATIONS)}: upgrade facecluster")
        return cls(db_path.parent, conn)

    def close(self) -> None:
        """Close the database; the store cannot be used afterwards."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"{self.db_path} has schema version {version}, newer than this "
                    f"facecluster understands ({len(MIGRATIONS)}); upgrade facecluster"
                )
            for v in range(version, len(MIGRATIONS)):
                for statement in MIGRATIONS[v]:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {v + 1}")
                # A new store is no news to a new user: its schema steps go to debug.
                (log.debug if version == 0 else log.info)(
                    "store_migrated", path=str(self.db_path), version=v + 1
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _keep_face_ids_above_cache(self) -> None:
        top = vector_cache.max_cached_id(self.state_dir)
        row = self._conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'faces'").fetchone()
        if top and (row is None or row[0] < top):
            with self._atomic():
                self._conn.execute("DELETE FROM sqlite_sequence WHERE name = 'faces'")
                self._conn.execute(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES ('faces', ?)", (top,)
                )
            log.warning("store_face_ids_raised", above=top)

    # -- transactions ----------------------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn SQLite exceptions into StoreError messages that say what to do."""
        try:
            yield
        except sqlite3.IntegrityError as e:
            raise StoreError(f"{self.db_path}: refused by a constraint: {e}") from e
        except sqlite3.OperationalError as e:
            raise StoreError(f"{self.db_path}: {e}") from e
        except sqlite3.DatabaseError as e:
            raise StoreError(
                f"{self.db_path} is not a usable facecluster database ({e}). Move it aside "
                "and run `facecluster rebuild` to index the photos again."
            ) from e
        except sqlite3.Error as e:
            raise StoreError(f"{self.db_path}: {e}") from e

    @contextmanager
    def _atomic(self) -> Iterator[None]:
        """A transaction, or a savepoint inside one already open."""
        with self._lock, self._errors():
            conn = self._conn
            depth = self._depth
            conn.execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT sp{depth}")
            mark = len(self._pending)
            self._depth = depth + 1
            try:
                yield
                if depth == 0:
                    conn.execute("COMMIT")
                else:
                    conn.execute(f"RELEASE sp{depth}")
            except BaseException:
                if depth == 0:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                else:
                    conn.execute(f"ROLLBACK TO sp{depth}")
                    conn.execute(f"RELEASE sp{depth}")
                del self._pending[mark:]
                raise
            finally:
                self._depth = depth
            if depth == 0:
                self._flush_pending()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group the writes made inside into one transaction (committed at the end).

        An exception leaving the block rolls all of them back. Batches nest.
        """
        with self._atomic():
            yield

    def _flush_pending(self) -> None:
        """Append the vectors of just-committed faces to the caches."""
        pending, self._pending = self._pending, []
        by_engine: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        for engine, ids, vecs in pending:
            by_engine.setdefault(engine, []).append((ids, vecs))
        for engine, parts in by_engine.items():
            ids = np.concatenate([p[0] for p in parts])
            vecs = np.concatenate([p[1] for p in parts])
            try:
                vector_cache.append(self.state_dir, engine, ids, vecs)
            except (OSError, ValueError) as e:
                # The cache is derived: vectors() repairs it from SQLite later.
                log.warning("vector_cache_append_failed", engine=engine, error=str(e))

    # -- photos ------------------------------------------------------------------------

    def photo(self, path: os.PathLike[str] | str) -> PhotoRecord | None:
        """The record of ``path``, or None if it was never indexed."""
        with self._lock, self._errors():
            row = self._conn.execute(
                f"SELECT {_PHOTO_COLUMNS} FROM photos p WHERE p.path = ?", (_path_key(path),)
            ).fetchone()
        return _photo(row) if row else None

    def has_photos_under(self, root: os.PathLike[str] | str) -> bool:
        """Whether any photo under the folder ``root`` is known (one indexed range probe)."""
        head = _path_key(root).rstrip(b"/") + b"/"
        # Keys under the folder sort between "<root>/" and "<root>0" ("0" follows "/").
        with self._lock, self._errors():
            row = self._conn.execute(
                "SELECT 1 FROM photos WHERE path >= ? AND path < ? LIMIT 1",
                (head, head[:-1] + b"0"),
            ).fetchone()
        return row is not None

    def photos_with_hash(self, content_hash: str) -> list[PhotoRecord]:
        """Every photo whose content hash is ``content_hash`` (byte-identical files)."""
        with self._lock, self._errors():
            rows = self._conn.execute(
                f"SELECT {_PHOTO_COLUMNS} FROM photos p WHERE p.content_hash = ? ORDER BY p.id",
                (content_hash,),
            ).fetchall()
        return [_photo(r) for r in rows]

    def photo_hashes(self, ids: Iterable[int]) -> dict[int, tuple[str, Path]]:
        """Photo id -> (content hash, path) of those of ``ids`` that have a hash: the
        lean read for a batch's photos (no row of another photo is touched)."""
        out: dict[int, tuple[str, Path]] = {}
        with self._lock, self._errors():
            for chunk in _chunks(sorted({int(i) for i in ids})):
                rows = self._conn.execute(
                    f"SELECT id, content_hash, path FROM photos WHERE id IN "
                    f"({','.join('?' * len(chunk))}) AND content_hash IS NOT NULL", chunk)
                out.update((r[0], (r[1], _path_of(r[2]))) for r in rows)
        return out

    def iter_photos(self, page: int = 1000) -> Iterator[PhotoRecord]:
        """All photos in id order, read a page at a time (writes may happen meanwhile)."""
        last = 0
        while True:
            with self._lock, self._errors():
                rows = self._conn.execute(
                    f"SELECT {_PHOTO_COLUMNS} FROM photos p WHERE p.id > ? ORDER BY p.id LIMIT ?",
                    (last, page),
                ).fetchall()
            if not rows:
                return
            for r in rows:
                yield _photo(r)
            last = rows[-1][0]

    def _engine_dim(self, engine: str) -> int | None:
        row = self._conn.execute(
            "SELECT length(embedding) FROM faces WHERE engine = ? LIMIT 1", (engine,)
        ).fetchone()
        return row[0] // 4 if row else None

    def save_indexed(
        self,
        path: os.PathLike[str] | str,
        size: int,
        mtime_ns: int,
        content_hash: str | None,
        indexed: IndexedPhoto,
    ) -> list[int]:
        """Record a successful indexing of ``path``, replacing its previous faces.

        Returns the new face ids in the order of ``indexed.faces``. Raises StoreError
        when an embedding's dimension does not match the engine's stored faces.
        """
        vecs = np.zeros((len(indexed.faces), 0), dtype=np.float32)
        if indexed.faces:
            try:
                vecs = np.stack(
                    [np.asarray(f.embedding, dtype="<f4").reshape(-1) for f in indexed.faces]
                )
            except ValueError as e:
                raise StoreError(f"{path}: embeddings of different lengths: {e}") from e
        with self._atomic():
            conn = self._conn
            if indexed.faces:
                dim = self._engine_dim(indexed.engine)
                if dim is not None and dim != vecs.shape[1]:
                    raise StoreError(
                        f"{path}: engine {indexed.engine} stored {dim}-d embeddings, "
                        f"got {vecs.shape[1]}-d"
                    )
            photo_id = self._upsert_photo(
                path=_path_key(path), size=size, mtime_ns=mtime_ns, content_hash=content_hash,
                status="indexed", error=None, transient=0, attempts=0, engine=indexed.engine,
                width=indexed.width, height=indexed.height, updated_at=time.time(),
            )
            conn.execute("DELETE FROM faces WHERE photo_id = ?", (photo_id,))
            ids = []
            for face, vec in zip(indexed.faces, vecs, strict=True):
                cur = conn.execute(
                    """INSERT INTO faces (photo_id, x, y, w, h, landmarks, score, engine,
                           embedding) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    (photo_id, *map(float, face.box),
                     json.dumps([[float(x), float(y)] for x, y in face.landmarks]),
                     float(face.score), indexed.engine, vec.tobytes()),
                )
                ids.append(int(cur.lastrowid))
            face_crops.save(conn, zip(ids, (f.crop for f in indexed.faces), strict=True))
            if ids:
                self._pending.append((indexed.engine, np.array(ids, dtype=np.int64), vecs))
        return ids

    def save_failed(
        self,
        path: os.PathLike[str] | str,
        size: int,
        mtime_ns: int,
        content_hash: str | None,
        reason: str,
        transient: bool,
    ) -> None:
        """Record that ``path`` could not be indexed; drops its faces, counts the attempt."""
        with self._atomic():
            photo_id = self._upsert_photo(
                path=_path_key(path), size=size, mtime_ns=mtime_ns, content_hash=content_hash,
                status="failed", error=reason, transient=int(transient), attempts=1,
                engine=None, width=None, height=None, updated_at=time.time(),
            )
            self._conn.execute("DELETE FROM faces WHERE photo_id = ?", (photo_id,))

    def _upsert_photo(self, **row: object) -> int:
        """Insert or update the photo row ``row["path"]`` (every photo field given); its id."""
        return self._conn.execute(_UPSERT_PHOTO, [row[c] for c in _PHOTO_FIELDS]).fetchone()[0]

    def _photo_id(self, path: os.PathLike[str] | str) -> int:
        row = self._conn.execute(
            "SELECT id FROM photos WHERE path = ?", (_path_key(path),)
        ).fetchone()
        if row is None:
            raise PhotoNotFoundError(f"{path} is not in the store")
        return int(row[0])

    def move_photo(
        self, old: os.PathLike[str] | str, new: os.PathLike[str] | str, size: int, mtime_ns: int
    ) -> None:
        """Record a rename: same photo row, same face ids and person ids.

        A photo already recorded at ``new`` (overwritten by the rename) is dropped.
        Raises PhotoNotFoundError when ``old`` is unknown.
        """
        with self._atomic():
            photo_id = self._photo_id(old)
            new_key = _path_key(new)
            self._conn.execute("DELETE FROM photos WHERE path = ? AND id != ?", (new_key, photo_id))
            self._conn.execute(
                "UPDATE photos SET path = ?, size = ?, mtime_ns = ?, updated_at = ? WHERE id = ?",
                (new_key, size, mtime_ns, time.time(), photo_id),
            )

    def copy_photo(
        self, src: os.PathLike[str] | str, new: os.PathLike[str] | str, size: int, mtime_ns: int
    ) -> list[int]:
        """Record a byte-identical copy of ``src`` at ``new`` without re-embedding.

        The copy gets its own photo row and new face ids; the faces keep their boxes,
        embeddings and person ids. Returns the new face ids (in the order of the source
        faces' ids). Raises PhotoNotFoundError when ``src`` is unknown.
        """
        if _path_key(src) == _path_key(new):
            raise StoreError(f"cannot copy {src} onto itself")
        with self._atomic():
            conn = self._conn
            src_id = self._photo_id(src)
            conn.execute("DELETE FROM photos WHERE path = ?", (_path_key(new),))
            new_id = conn.execute(
                _COPY_PHOTO, (_path_key(new), size, mtime_ns, time.time(), src_id)
            ).fetchone()[0]
            faces = conn.execute(
                """SELECT id, x, y, w, h, landmarks, score, engine, person_id, embedding
                   FROM faces WHERE photo_id = ? ORDER BY id""",
                (src_id,),
            ).fetchall()
            ids = []
            for src_face, *row in faces:
                cur = conn.execute(
                    """INSERT INTO faces (photo_id, x, y, w, h, landmarks, score, engine,
                           person_id, embedding) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    (new_id, *row),
                )
                face_id = int(cur.lastrowid)
                ids.append(face_id)
                face_crops.copy(conn, [(src_face, face_id)])
                self._pending.append(
                    (row[6], np.array([face_id], dtype=np.int64),
                     np.frombuffer(row[8], dtype="<f4").reshape(1, -1))
                )
        return ids

    def delete_photo(self, path: os.PathLike[str] | str) -> int:
        """Forget ``path`` and its faces; returns how many faces went (0 if unknown)."""
        with self._atomic():
            row = self._conn.execute(
                """SELECT id, (SELECT COUNT(*) FROM faces WHERE photo_id = photos.id)
                   FROM photos WHERE path = ?""",
                (_path_key(path),),
            ).fetchone()
            if row is None:
                return 0
            self._conn.execute("DELETE FROM photos WHERE id = ?", (row[0],))
        return int(row[1])

    def failed_photos(self, limit: int = 200) -> list[PhotoRecord]:
        """Photos whose indexing failed, latest first, at most ``limit``."""
        with self._lock, self._errors():
            rows = self._conn.execute(
                f"SELECT {_PHOTO_COLUMNS} FROM photos p WHERE p.status = 'failed' "
                "ORDER BY p.updated_at DESC LIMIT ?", (limit,),
            ).fetchall()
        return [_photo(r) for r in rows]

    # -- faces and vectors ---------------------------------------------------------------

    def _live_ids(self, engine: str) -> np.ndarray:
        """The engine's face ids, ascending.

        Joined into one string inside SQLite and parsed by NumPy: about 3x faster at 1M
        faces than building a Python tuple per row.
        """
        text = self._conn.execute(
            "SELECT group_concat(id) FROM (SELECT id FROM faces WHERE engine = ? ORDER BY id)",
            (engine,),
        ).fetchone()[0]
        ids = np.fromstring(text or "", dtype=np.int64, sep=",")
        if ids.size > 1 and not bool(np.all(ids[1:] > ids[:-1])):
            ids.sort()  # group_concat's order is not guaranteed by SQL
        return ids

    def _fetch_embeddings(
        self, engine: str, ids: np.ndarray | None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Stream embeddings out of SQLite in chunks (all of ``engine`` when ids is None)."""
        def unpack(rows: list) -> tuple[np.ndarray, np.ndarray]:
            got = np.array([r[0] for r in rows], dtype=np.int64)
            blob = b"".join(r[1] for r in rows)
            return got, np.frombuffer(blob, dtype="<f4").reshape(len(rows), -1)

        if ids is None:
            cur = self._conn.execute(
                "SELECT id, embedding FROM faces WHERE engine = ? ORDER BY id", (engine,)
            )
            while rows := cur.fetchmany(_FETCH_ROWS):
                yield unpack(rows)
            return
        for chunk in _chunks(ids):
            rows = self._conn.execute(
                f"SELECT id, embedding FROM faces WHERE engine = ? AND id IN "
                f"({','.join('?' * len(chunk))}) ORDER BY id",
                (engine, *chunk),
            ).fetchall()
            if rows:
                yield unpack(rows)

    def vectors(self, engine: str) -> tuple[np.ndarray, np.ndarray]:
        """All live faces of ``engine``: ``(ids int64[n] ascending, float32[n, d])``.

        Served from the memory-mapped cache, repaired from SQLite as needed (see
        :mod:`daemon.store.vectors`). The array is read-only and may be a memory map;
        it is ``(0, 0)``-shaped when the engine has no faces and no cache. Inside a
        batch, faces not yet committed are included from memory.
        """
        with self._lock, self._errors():
            # Compaction below may drop orphan rows: raise the id counter past them first.
            self._keep_face_ids_above_cache()
            own_snapshot = self._depth == 0
            if own_snapshot:
                self._conn.execute("BEGIN")  # one consistent snapshot for ids and BLOBs
            try:
                live = self._live_ids(engine)
                parts = [(p[1], p[2]) for p in self._pending if p[0] == engine]
                fresh_ids = np.concatenate([p[0] for p in parts]) if parts else None
                committed = live if fresh_ids is None else np.setdiff1d(live, fresh_ids)
                try:
                    vecs = vector_cache.load(
                        self.state_dir, engine, committed,
                        lambda ids: self._fetch_embeddings(engine, ids),
                    )
                except (vector_cache.VectorCacheError, OSError) as e:
                    raise StoreError(f"vector cache for {engine} in {self.state_dir}: {e}") from e
            finally:
                if own_snapshot:
                    self._conn.execute("COMMIT")
        if fresh_ids is None:
            return live, vecs
        fresh = np.concatenate([p[1] for p in parts])
        keep = np.isin(fresh_ids, live)  # a fresh face may already be deleted again
        all_ids = np.concatenate([committed, fresh_ids[keep]])
        all_vecs = np.concatenate([vecs, fresh[keep]]) if committed.size else fresh[keep]
        order = np.argsort(all_ids, kind="stable")
        all_vecs = all_vecs[order]
        all_vecs.flags.writeable = False
        return all_ids[order], all_vecs

    def face_vectors(self, ids: Sequence[int]) -> np.ndarray:
        """Embeddings of the given faces straight from SQLite, row for row (few faces)."""
        with self._lock, self._errors():
            found: dict[int, np.ndarray] = {}
            for chunk in _chunks(list(ids)):
                for face_id, blob in self._conn.execute(
                    f"SELECT id, embedding FROM faces WHERE id IN ({','.join('?' * len(chunk))})",
                    chunk,
                ):
                    found[face_id] = np.frombuffer(blob, dtype="<f4")
        missing = [i for i in ids if i not in found]
        if missing:
            raise StoreError(f"no such faces: {missing[:10]}")
        if not found:
            return np.empty((0, 0), dtype=np.float32)
        return np.stack([found[int(i)] for i in ids])

    def face_crops(self, ids: Sequence[int]) -> dict[int, bytes]:
        """face id -> its stored picture (JPEG) for those of ``ids`` that have one."""
        with self._lock, self._errors():
            return face_crops.load(self._conn, list(ids))

    def faces(
        self,
        ids: Iterable[int] | None = None,
        *,
        person_id: int | None = None,
        engine: str | None = None,
    ) -> list[FaceRecord]:
        """Face records in id order, filtered by ids, person and/or engine."""
        where, args = [], []
        if person_id is not None:
            where.append("f.person_id = ?")
            args.append(person_id)
        if engine is not None:
            where.append("f.engine = ?")
            args.append(engine)
        base = f"SELECT {_FACE_COLUMNS} FROM faces f JOIN photos p ON p.id = f.photo_id"
        with self._lock, self._errors():
            if ids is None:
                sql = base + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY f.id"
                return [_face(r) for r in self._conn.execute(sql, args)]
            out: list[FaceRecord] = []
            for chunk in _chunks(sorted(set(int(i) for i in ids))):
                cond = [f"f.id IN ({','.join('?' * len(chunk))})", *where]
                sql = f"{base} WHERE {' AND '.join(cond)} ORDER BY f.id"
                out += [_face(r) for r in self._conn.execute(sql, [*chunk, *args])]
            return out

    def person_faces(self, person_id: int, offset: int = 0, limit: int = 100) -> list[FaceRecord]:
        """One page of a person's faces in id order (a person may have thousands)."""
        with self._lock, self._errors():
            # The page's ids come from the index alone: an OFFSET over full rows would
            # read every skipped face's embedding.
            rows = self._conn.execute(
                f"SELECT {_FACE_COLUMNS} FROM faces f JOIN photos p ON p.id = f.photo_id "
                "WHERE f.id IN (SELECT id FROM faces WHERE person_id = ? ORDER BY id "
                "LIMIT ? OFFSET ?) ORDER BY f.id",
                (person_id, limit, offset),
            ).fetchall()
        return [_face(r) for r in rows]

    def person_samples(self, per_person: int) -> dict[int, list[int]]:
        """Person id -> the ids of up to ``per_person`` of their faces (lowest ids)."""
        with self._lock, self._errors():
            rows = self._conn.execute(
                "SELECT person_id, id FROM (SELECT person_id, id, ROW_NUMBER() OVER "
                "(PARTITION BY person_id ORDER BY id) AS k FROM faces "
                "WHERE person_id IS NOT NULL) WHERE k <= ?", (per_person,),
            ).fetchall()
        out: dict[int, list[int]] = {}
        for person_id, face_id in rows:
            out.setdefault(person_id, []).append(face_id)
        return out

    def face_persons(self, engine: str) -> dict[int, int]:
        """Face id -> person id of one engine's faces that have a person.

        The lean form of :meth:`faces` that clustering needs: at a million faces, building
        a full record per face costs half a minute and a gigabyte.
        """
        with self._lock, self._errors():
            return dict(
                self._conn.execute(
                    "SELECT id, person_id FROM faces WHERE engine = ? AND person_id IS NOT NULL",
                    (engine,),
                ).fetchall()
            )

    def face_photos(self, engine: str) -> dict[int, int]:
        """Face id -> photo id of one engine's faces: the lean form of :meth:`faces` for
        the rule that two faces of one photo are two people (``facecluster review``)."""
        with self._lock, self._errors():
            return dict(self._conn.execute(
                "SELECT id, photo_id FROM faces WHERE engine = ?", (engine,)).fetchall())

    # -- people ---------------------------------------------------------------------------

    def set_persons(self, mapping: Mapping[int, int | None]) -> None:
        """Set the person of many faces in one transaction (None = no person).

        Face ids no longer in the store are skipped. Raises StoreError for a person id
        that :meth:`new_person_id` never handed out.
        """
        with self._atomic():
            self._conn.executemany(
                "UPDATE faces SET person_id = ? WHERE id = ?",
                ((None if p is None else int(p), int(f)) for f, p in mapping.items()),
            )

    def new_person_id(self, skip: Container[int] = ()) -> int:
        """A fresh person id, never handed out before (even after retirement).

        Ids in ``skip`` (mentioned in labels.toml but nobody's) are stepped over, so a
        stranger never gets a number the user already wrote down.
        """
        with self._atomic():
            while True:
                cur = self._conn.execute(
                    "INSERT INTO people (created_at) VALUES (?)", (time.time(),)
                )
                pid = int(cur.lastrowid)
                if pid not in skip:
                    return pid
                # AUTOINCREMENT never hands the deleted id out again.
                self._conn.execute("DELETE FROM people WHERE id = ?", (pid,))

    def repair_person_ids(self, limit: int, floor: int = 0) -> int:
        """Undo a person counter pushed past ``limit``; returns the new highest id.

        People with ids above ``limit`` are removed and their faces left without a
        person (the next clustering gives them a fresh id); the counter becomes the
        highest id left, or ``floor`` if higher.
        """
        with self._atomic():
            self._conn.execute("UPDATE faces SET person_id = NULL WHERE person_id > ?", (limit,))
            self._conn.execute("DELETE FROM people WHERE id > ?", (limit,))
            row = self._conn.execute("SELECT MAX(id) FROM people").fetchone()
            top = max(int(row[0] or 0), floor)
            self._conn.execute("DELETE FROM sqlite_sequence WHERE name = 'people'")
            self._conn.execute(
                "INSERT INTO sqlite_sequence (name, seq) VALUES ('people', ?)", (top,)
            )
        return top

    def retire_people(self, ids: Iterable[int]) -> None:
        """Mark people as retired (merged away or empty); their ids stay taken."""
        now = time.time()
        with self._atomic():
            self._conn.executemany(
                "UPDATE people SET retired_at = ? WHERE id = ? AND retired_at IS NULL",
                ((now, int(i)) for i in ids),
            )

    def people(self) -> list[PersonRecord]:
        """Every person id ever handed out, with current face and photo counts."""
        with self._lock, self._errors():
            rows = self._conn.execute(
                """SELECT pe.id, pe.created_at, pe.retired_at, COUNT(f.id),
                       COUNT(DISTINCT f.photo_id)
                   FROM people pe LEFT JOIN faces f ON f.person_id = pe.id
                   GROUP BY pe.id ORDER BY pe.id"""
            ).fetchall()
        return [
            PersonRecord(id=r[0], created_at=r[1], retired_at=r[2], retired=r[2] is not None,
                         face_count=r[3], photo_count=r[4])
            for r in rows
        ]

    # -- identity anchors (see daemon/people/identity.py) ---------------------------------------

    def face_keys(
        self,
        *,
        person_ids: Iterable[int] | None = None,
        face_ids: Iterable[int] | None = None,
        hashes: Iterable[str] | None = None,
    ) -> list[FaceKeyRow]:
        """Faces with their photo's content hash and box, selected by exactly one filter."""
        filters = [(c, v) for c, v in (("f.person_id", person_ids), ("f.id", face_ids),
                                        ("p.content_hash", hashes)) if v is not None]
        if len(filters) != 1:
            raise ValueError("face_keys takes exactly one of person_ids, face_ids, hashes")
        column, values = filters[0]
        wanted = sorted(set(values))
        out: list[FaceKeyRow] = []
        with self._lock, self._errors():
            for i in range(0, len(wanted), _CHUNK):
                chunk = wanted[i : i + _CHUNK]
                rows = self._conn.execute(
                    "SELECT f.id, f.photo_id, f.person_id, p.content_hash, f.x, f.y, f.w, f.h "
                    f"FROM faces f JOIN photos p ON p.id = f.photo_id WHERE {column} IN "
                    f"({','.join('?' * len(chunk))}) ORDER BY f.id",
                    chunk,
                ).fetchall()
                out += [FaceKeyRow(r[0], r[1], r[2], r[3], (r[4], r[5], r[6], r[7])) for r in rows]
        return out

    def top_ids(self) -> tuple[int, int]:
        """(highest face id, highest person id) ever handed out by this store."""
        with self._lock, self._errors():
            seq = dict(self._conn.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
        return int(seq.get("faces", 0)), int(seq.get("people", 0))

    def keep_ids_above(self, faces: int, people: int) -> None:
        """Never hand out a face id <= ``faces`` or a person id <= ``people``.

        A re-derived store must not give a stranger a number that labels.toml already
        uses for someone else.
        """
        with self._atomic():
            for name, top in (("faces", faces), ("people", people)):
                row = self._conn.execute(
                    "SELECT seq FROM sqlite_sequence WHERE name = ?", (name,)
                ).fetchone()
                if row is not None and row[0] >= top:
                    continue
                self._conn.execute("DELETE FROM sqlite_sequence WHERE name = ?", (name,))
                self._conn.execute(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (name, int(top))
                )

    def restore_people(self, ids: Iterable[int]) -> None:
        """Make person ids usable again for the human they were anchored to.

        A person id the anchors bring back (into a re-derived store, or after its photos
        returned) gets its row, and loses its retirement.
        """
        now = time.time()
        with self._atomic():
            self._conn.executemany(
                "INSERT INTO people (id, created_at) VALUES (?, ?) "
                "ON CONFLICT(id) DO UPDATE SET retired_at = NULL",
                ((int(i), now) for i in ids),
            )

    # -- settings and totals --------------------------------------------------------------

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        """A stored setting, or ``default``."""
        with self._lock, self._errors():
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        """Store a setting (a string; encoding anything richer is the caller's business)."""
        if not isinstance(value, str):
            raise TypeError(f"meta value for {key!r} must be a string, got {type(value).__name__}")
        with self._atomic():
            self._conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def data_version(self) -> int:
        """A number that changes whenever another connection commits (for read caches)."""
        with self._lock, self._errors():
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def counts(self) -> StoreCounts:
        """Totals of photos by status, faces (by engine) and people with faces."""
        with self._lock, self._errors():
            conn = self._conn
            by_status = dict(conn.execute("SELECT status, COUNT(*) FROM photos GROUP BY status"))
            by_engine = dict(conn.execute("SELECT engine, COUNT(*) FROM faces GROUP BY engine"))
            people = conn.execute(
                "SELECT COUNT(DISTINCT person_id) FROM faces WHERE person_id IS NOT NULL"
            ).fetchone()[0]
        return StoreCounts(
            photos_indexed=by_status.get("indexed", 0),
            photos_failed=by_status.get("failed", 0),
            faces=sum(by_engine.values()),
            faces_by_engine=by_engine,
            people=people,
        )
