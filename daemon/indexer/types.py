"""The data the indexer hands on: faces found in one photo."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np


class EngineError(ValueError):
    """The configured engine cannot work: a model is missing or the combination is invalid."""


class PhotoError(Exception):
    """A photo could not be indexed.

    ``reason`` is one readable line for logs and ``facecluster status``; ``transient``
    says whether trying again later may succeed (file still being written, permission
    that may be fixed, disk busy) as opposed to a file that is simply not a usable image.
    """

    def __init__(self, reason: str, *, transient: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient

    def __reduce__(self) -> tuple:
        # Exceptions pickle only their args by default; keep ``transient`` across processes.
        return (_photo_error, (self.reason, self.transient))


def _photo_error(reason: str, transient: bool) -> PhotoError:
    return PhotoError(reason, transient=transient)


@dataclass(frozen=True)
class Face:
    """One detected, embedded face.

    Coordinates are in pixels of the upright photo (EXIF orientation applied) at full
    resolution, whatever size detection ran at.
    """

    box: tuple[float, float, float, float]
    """x, y, width, height."""
    landmarks: tuple[tuple[float, float], ...]
    """Five points: right eye, left eye, nose tip, right and left mouth corner; may be ()."""
    score: float
    """Detector confidence, 0..1."""
    embedding: np.ndarray = field(repr=False, compare=False)
    """float32 vector of the engine's dimension, L2-normalised."""
    crop: bytes = field(default=b"", repr=False, compare=False)
    """JPEG of the face, upright, at most 256 px square (:mod:`.crops`), cut from the
    indexer's decode so album and web pictures need not decode the photo again; b"" when
    none was cut."""


@dataclass(frozen=True)
class IndexedPhoto:
    """What the indexer learned from one photo."""

    path: Path
    width: int
    """Upright width in pixels."""
    height: int
    engine: str
    """Id of the engine that produced the embeddings, e.g. ``yunet-2023mar+dlib-resnet-v1``."""
    faces: tuple[Face, ...]


class Indexer(Protocol):
    """What sync needs of an indexer: the local pool (:class:`daemon.indexer.IndexPool`) or
    the cluster (:class:`daemon.remote.indexer.ClusterIndexer`)."""

    engine_id: str | None

    def start(self) -> Indexer: ...
    def __enter__(self) -> Indexer: ...
    def close(self) -> None: ...
    def describe(self) -> dict:
        """For ``status``: where photos are indexed."""
        ...
    def imap(self, paths: Iterable[Path], digests: Mapping[Path, str] | None = None
             ) -> Iterator[tuple[Path, IndexedPhoto | PhotoError]]:
        """``(path, result)`` for every path, each once; ``digests``: their content hashes."""
        ...
