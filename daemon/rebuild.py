"""``facecluster rebuild``: start the store afresh from the photos.

For a store whose files were deleted or corrupted. Nothing is deleted: the old files are
moved into ``state_dir/broken-<time>/`` so they can be inspected or restored, and the
next scan re-derives photos, faces and people from the watched folders. Person ids are
assigned anew, so ids named in labels.toml may need checking afterwards (`facecluster
people` shows the new ones with their sample photos).
"""

from __future__ import annotations

import time
from pathlib import Path

import structlog

from daemon.config import Config

log = structlog.get_logger(__name__)

STORE_GLOBS = ("facecluster.sqlite3*", "vectors*")


def set_store_aside(state_dir: Path) -> Path:
    """Move the store's files into a new ``broken-<time>`` folder; return that folder.

    The caller must hold the state dir's lock so no service writes meanwhile.
    """
    aside = state_dir / time.strftime("broken-%Y%m%dT%H%M%S", time.gmtime())
    aside.mkdir(mode=0o700, parents=True, exist_ok=False)
    for pattern in STORE_GLOBS:
        for f in sorted(state_dir.glob(pattern)):
            f.rename(aside / f.name)
    log.warning("store_set_aside", folder=str(aside))
    return aside


def rebuild(cfg: Config) -> Path:
    """Set the store aside under the lock; the caller then runs a scan."""
    from daemon.lock import hold

    with hold(cfg.state_dir):
        return set_store_aside(cfg.state_dir)
