"""An engine's fingerprint: its id and the sha256 of every model file it loads.

The id alone names model versions; the hashes make sure a worker on another machine runs
the very same weights (a dlib package of another build, a hand-placed file), because
faces embedded by different weights must never be compared. No Dask here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from daemon.config import EngineConfig
from daemon.indexer.models import cached_sha256


@dataclass(frozen=True)
class Fingerprint:
    """Which engine, and which exact model files."""

    engine: str
    models: tuple[tuple[str, str], ...]
    """(role, sha256) for each model file, sorted by role."""

    def differences(self, other: Fingerprint) -> list[str]:
        """What differs from ``other``, readably; empty when they are the same engine."""
        out = []
        if self.engine != other.engine:
            out.append(f"engine {other.engine} instead of {self.engine}")
        mine, theirs = dict(self.models), dict(other.models)
        for role in sorted(set(mine) | set(theirs)):
            if mine.get(role) != theirs.get(role):
                a, b = (mine.get(role) or "none")[:12], (theirs.get(role) or "none")[:12]
                out.append(f"model {role} sha256 {b}… instead of {a}…")
        return out

    def as_dict(self) -> dict:
        """Plain data, for the scheduler's metadata (which must not need this package)."""
        return {"engine": self.engine, "models": [list(m) for m in self.models]}

    @classmethod
    def from_dict(cls, data: object) -> Fingerprint | None:
        """The inverse of :meth:`as_dict`; None for anything else."""
        if not isinstance(data, dict) or not isinstance(data.get("engine"), str):
            return None
        return cls(data["engine"], tuple((str(r), str(h)) for r, h in data.get("models", ())))

    def as_text(self) -> str:
        """One line for logs and ``status``."""
        return self.engine + " (" + ", ".join(f"{r} {h[:12]}" for r, h in self.models) + ")"


def _hash(role: str, path: Path) -> str:
    # The manifest's models sit in our models folder, whose hash cache the engine keeps
    # too; dlib's live in site-packages, not a folder of ours to write.
    return cached_sha256(path, on_disk=not role.startswith("dlib"))


def fingerprint(engine_cfg: EngineConfig) -> Fingerprint:
    """The fingerprint of the engine ``engine_cfg`` opens (hashes files; loads no model).

    Raises :class:`daemon.indexer.EngineError` when that engine cannot work.
    """
    from daemon.indexer.engine import engine_id_for, model_files

    files = model_files(engine_cfg)
    return Fingerprint(
        engine_id_for(engine_cfg), tuple(sorted((k, _hash(k, p)) for k, p in files.items()))
    )
