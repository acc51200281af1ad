"""Face crops and montages for the page, drawn by the album pictures code, cached on disk.

A face's picture comes from the crop store (cut by the indexer) when it has one, else it
is cut from the original photo; either way it is kept as
``state_dir/web-cache/faces/<id // 1000>/<id>.jpg``; face ids are never reused, so a
crop never goes stale (a re-indexed photo gets new face ids). A montage is keyed by the
ids of the faces it shows. The cache is derived: deleting it only costs redrawing.

Left alone it would only grow (every change to a person makes a new montage), so it is
kept under a size: past ``max_bytes`` the files least recently shown go first (a cache
hit refreshes the file's time).

Whoever can write in the state dir could swap a cached file or folder for a symlink to
a private file: every cache folder is opened with ``O_NOFOLLOW`` under its parent's
descriptor and every file read with ``O_NOFOLLOW`` (as the album writer does,
:mod:`daemon.albums.dirs`), so a link is never served, written through, or touched.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
import structlog

from daemon.albums.dirs import AlbumError, open_dir
from daemon.albums.pictures import crop_face, load_image, make_montage, scaled
from daemon.fsutil import atomic_write
from daemon.indexer.crops import decode_crop
from daemon.indexer.image import load_reduced
from daemon.store import FaceRecord

log = structlog.get_logger(__name__)

CACHE_DIR = "web-cache"
CACHE_MAX_BYTES = 256 * 1024 * 1024
"""About 25,000 face crops: a few people's worth of browsing; the rest is redrawn."""
CROP_SIZE = 160
MONTAGE_CELL = 80
RENDITION_SIDE = 2560
"""Longest side of the JPEG shown for a photo a browser cannot show (a 4K screen's)."""
_READ = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class NoPicture(Exception):
    """The photo behind a face cannot be read or cropped (the page shows no picture)."""


def _encode(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise NoPicture("JPEG encoding failed")
    return buf.tobytes()


class FaceImages:
    """Crops and montages under ``state_dir/web-cache``."""

    def __init__(self, state_dir: Path, max_pixels: int,
                 max_bytes: int = CACHE_MAX_BYTES) -> None:
        self.root = state_dir / CACHE_DIR
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes
        self._size: int | None = None  # bytes in the cache, once walked

    @staticmethod
    def _crop_key(face_id: int) -> tuple[tuple[str, ...], str]:
        return ("faces", str(face_id // 1000)), f"{face_id}.jpg"

    def _crop_path(self, face_id: int) -> Path:
        folders, name = self._crop_key(face_id)
        return self.root.joinpath(*folders, name)

    @contextlib.contextmanager
    def _folder(self, folders: Sequence[str], create: bool) -> Iterator[int]:
        """A descriptor of ``root/folders``, each step opened without following a link
        (a planted symlink raises AlbumError; a missing folder FileNotFoundError)."""
        if create:
            self.root.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fds = [os.open(self.root.parent, os.O_RDONLY | os.O_DIRECTORY)]
        try:
            for name in (self.root.name, *folders):
                fds.append(open_dir(fds[-1], name, create=create, mode=0o700)[0])
            yield fds[-1]
        finally:
            for fd in fds:
                os.close(fd)

    def _cached(self, folders: Sequence[str], name: str) -> bytes | None:
        """The cached picture, or None; only a plain file of ours, never through a link."""
        try:
            with self._folder(folders, create=False) as dir_fd:
                fd = os.open(name, _READ, dir_fd=dir_fd)
                with open(fd, "rb") as f:
                    st = os.fstat(f.fileno())
                    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                        log.warning("web_cache_file_refused", folder="/".join(folders),
                                    name=name)
                        return None
                    data = f.read()
                    with contextlib.suppress(OSError):
                        os.utime(f.fileno())  # shown now: the pruning keeps it longest
                    return data
        except (OSError, AlbumError):
            return None

    def _store(self, folders: Sequence[str], name: str, data: bytes) -> None:
        try:
            with self._folder(folders, create=True) as dir_fd:
                # a lost crop is only redrawn; the rename replaces a planted link itself
                atomic_write(name, data, dir_fd=dir_fd, durable=False)
        except (OSError, AlbumError) as e:
            log.warning("web_cache_write_failed", folder="/".join(folders), error=str(e))
            return
        self._size = cache_size(self.root) if self._size is None else self._size + len(data)
        if self._size > self.max_bytes:
            self._size = prune(self.root, self.max_bytes * 3 // 4)

    def _crop(self, face: FaceRecord, real_path: str, stored: bytes | None) -> np.ndarray:
        image = decode_crop(stored, CROP_SIZE) if stored else None
        if image is not None:
            return image
        try:
            image, scale = load_image(Path(real_path), self.max_pixels, [face.box], [CROP_SIZE])
            return crop_face(image, scaled(face.box, scale), CROP_SIZE)
        except Exception as e:  # PhotoError, OSError, cv2.error, ValueError: show none
            raise NoPicture(f"face {face.id}: {e}") from e

    def crop(self, face: FaceRecord, real_path: str,
             stored: bytes | Callable[[], bytes | None] | None = None) -> bytes:
        """JPEG of one face (``real_path``: its photo, already checked to be allowed;
        ``stored``: its crop from the crop store, or a function reading it, called only
        when the cache misses: most views are cache hits and need no store read)."""
        key = self._crop_key(face.id)
        if (hit := self._cached(*key)) is not None:
            return hit
        data = _encode(self._crop(face, real_path, stored() if callable(stored) else stored))
        self._store(*key, data)
        return data

    def rendition(self, real_path: str) -> bytes:
        """A JPEG of a whole photo a browser cannot show itself (HEIC, AVIF, TIFF, RAW),
        upright, its longer side at most RENDITION_SIDE. Drawn anew each time: the
        browser keeps it, and only a few such photos are opened at once."""
        try:
            image, _ = load_reduced(Path(real_path), self.max_pixels, 1.0)
            side = max(image.shape[:2])
            if side > RENDITION_SIDE:
                f = RENDITION_SIDE / side
                image = cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        except Exception as e:  # PhotoError, OSError, cv2.error: show none
            raise NoPicture(f"{real_path}: {e}") from e
        return _encode(image)

    def montage(self, faces: Sequence[tuple[FaceRecord, str]],
                stored: Mapping[int, bytes] | Callable[[], Mapping[int, bytes]] | None = None
                ) -> bytes:
        """JPEG grid of these faces (each with its checked photo path; ``stored``: face id
        -> crop from the crop store, or a function reading them on a cache miss)."""
        key = hashlib.sha1(",".join(str(f.id) for f, _ in faces).encode()).hexdigest()
        where = (("montages",), f"{key}.jpg")
        if (hit := self._cached(*where)) is not None:
            return hit
        stored = stored() if callable(stored) else stored
        tiles = []
        for face, real in faces:
            try:
                data = self.crop(face, real, (stored or {}).get(face.id))
                tile = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            except NoPicture as e:
                log.warning("web_montage_face_skipped", error=str(e))
                continue
            if tile is not None:
                tiles.append(tile)
        if not tiles:
            raise NoPicture("no face of this person could be drawn")
        data = _encode(make_montage(tiles, MONTAGE_CELL))
        self._store(*where, data)
        return data


def _files(root: Path) -> list[tuple[float, int, Path]]:
    """(last use, size, path) of every cached picture (plain files; links not followed)."""
    out = []
    for folder, _, names in os.walk(root):  # os.walk does not enter linked folders
        for name in names:
            path = Path(folder) / name
            with contextlib.suppress(OSError):
                st = path.lstat()
                if name.endswith(".jpg") and stat.S_ISREG(st.st_mode):
                    out.append((st.st_mtime, st.st_size, path))
    return out


def cache_size(root: Path) -> int:
    """Bytes of pictures under ``root``."""
    return sum(size for _, size, _ in _files(root))


def prune(root: Path, target: int) -> int:
    """Remove the least recently used pictures until at most ``target`` bytes are left;
    returns the bytes left."""
    files = sorted(_files(root))
    left = sum(size for _, size, _ in files)
    removed = 0
    for _, size, path in files:
        if left <= target:
            break
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
        left -= size
    log.info("web_cache_pruned", removed=removed, bytes_left=left)
    return left
