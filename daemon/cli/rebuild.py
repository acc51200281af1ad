"""``facecluster rebuild``: start the store afresh from the photos.

For a store whose files were deleted or corrupted. Nothing is deleted: the old files are
moved into ``state_dir/broken-<time>/`` so they can be inspected or restored, and the
next scan re-derives photos, faces and people from the watched folders. Names survive:
``state_dir/identity.json`` (the identity anchors, never set aside) gives every
person-NNNN and face-N of labels.toml back to the same human; before the store is set
aside, it is brought up to date from the old store if that can still be read.
"""

from __future__ import annotations

import time
from pathlib import Path

import structlog

from daemon.config import Config
from daemon.store.db import DB_NAME

log = structlog.get_logger(__name__)

STORE_GLOBS = ("facecluster.sqlite3*", "vectors*")
"""The store's files; ``identity.json`` is deliberately not among them."""


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


def anchor_old_store(cfg: Config) -> bool:
    """Record the identity anchors of labels.toml's people from the store about to go.

    Covers names written since the last clustering. A store too broken to read is
    logged and skipped: the anchors last written still hold. Returns whether it was read.
    """
    from daemon.people.identity import Identity
    from daemon.people.labels import Labels, LabelsError, load_labels
    from daemon.store import Store, StoreError

    if not (cfg.state_dir / DB_NAME).exists():
        return False
    try:
        labels_ = load_labels(cfg.labels_file)
    except LabelsError as e:
        # Anchored people are still refreshed; the broken lines are reported by the scan.
        log.warning("labels_invalid", file=str(cfg.labels_file), error=str(e))
        labels_ = Labels()
    identity = Identity(cfg.state_dir, cfg.albums_dir)
    try:
        with Store.open(cfg.state_dir) as store:
            identity.refresh(store, labels_, cfg.watch, mode="add")
    except (StoreError, OSError, ValueError) as e:
        log.warning(
            "old_store_unreadable",
            error=str(e),
            hint="names are kept from state/identity.json as the last clustering left it",
        )
        return False
    return True


def rebuild(cfg: Config) -> Path:
    """Anchor and set the store aside under the lock; the caller then runs a scan."""
    from daemon.service.lock import hold

    with hold(cfg.state_dir):
        anchor_old_store(cfg)
        return set_store_aside(cfg.state_dir)
