"""The first start from a fresh clone: make the watched folders and say where things go.

``make run`` calls this (``facecluster run --create-folders``) so a new user needs no
guessing: the photo folder exists, and one message says where to drop photos, where the
albums appear and how to name people. It is printed only when a folder was created, so
once. The service itself never creates a missing watched folder: under a service
manager that folder may be an unmounted share, whose mount point must stay empty.
"""

from __future__ import annotations

from pathlib import Path

from daemon.config import Config


def prepare(cfg: Config) -> str | None:
    """Create missing watched folders; the message to show once, or None if none was made."""
    created: list[Path] = []
    for root in cfg.watch:
        if not root.exists():
            root.mkdir(parents=True)
            created.append(root)
    if not created:
        return None
    folders = "\n".join(f"    {p}" for p in cfg.watch)
    return (
        "facecluster is ready. Drop photos (any sub-folders) into:\n"
        f"{folders}\n"
        "Albums, one folder per person, appear in:\n"
        f"    {cfg.albums_dir}\n"
        "Name people with  .venv/bin/facecluster name person-0001 \"Grandma\"  once their\n"
        "albums appear (see README \"Naming and merging people\"). Stop with Ctrl-C."
    )
