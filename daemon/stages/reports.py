"""What the pipeline's stages report back: plain dataclasses, no behaviour."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from daemon import albums


@dataclass
class IndexReport:
    """What one round of indexing did."""

    indexed: int = 0
    skipped: int = 0
    moved: int = 0
    copied: int = 0
    failed: int = 0
    new_face_ids: list[int] = field(default_factory=list)

    def add(self, other: IndexReport) -> None:
        """Accumulate another report into this one."""
        self.indexed += other.indexed
        self.skipped += other.skipped
        self.moved += other.moved
        self.copied += other.copied
        self.failed += other.failed
        self.new_face_ids.extend(other.new_face_ids)


@dataclass(frozen=True)
class ClusterReport:
    """What a full re-clustering found."""

    faces: int
    people: int
    noise: int
    retired: int
    seconds: float


@dataclass(frozen=True)
class ScanReport:
    """Everything one ``facecluster scan`` did."""

    index: IndexReport
    removed: int
    cluster: ClusterReport
    albums: albums.AlbumReport
    seconds: float


@dataclass(frozen=True)
class PipelineStatus:
    """The store's view of the library, for ``facecluster status``."""

    engine: str
    photos: dict[str, int]
    faces: int
    people: int
    last_scan: str | None
    last_recluster: str | None
    labels_error: str | None
    identity_conflicts: list[dict] = field(default_factory=list)
    """See :func:`daemon.people.identity.conflict`."""

    def as_dict(self) -> dict:
        """Plain JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class PersonRow:
    """One line of ``facecluster people``."""

    id: int
    key: str
    name: str | None
    faces: int
    photos: int
    album: str | None
    """Absolute album folder, or None when hidden."""
    sample: str | None = None
    """A photo showing this person (their clearest face, never another member's)."""
    sample_face: str | None = None
    """That face's id, ``face-N``, as ``exclude`` takes it."""
    hidden: bool = False
    may_be: list[str] = field(default_factory=list)
    """Keys of the people this one may be the same as, nearest first."""

    def as_dict(self) -> dict:
        """Plain JSON-ready form."""
        return asdict(self)
