"""Turn one batch of watcher events into the work it asks of the pipeline.

Photos to index, photos to forget, whether a whole folder went (every photo under it
must be checked), and whether a watched root came back (the folders need a rescan).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from daemon.watcher import Change, RootBack, RootGone, WatchEvent

log = structlog.get_logger(__name__)


@dataclass
class Work:
    """What a batch of events asks for."""

    to_index: list[Path] = field(default_factory=list)
    to_forget: list[Path] = field(default_factory=list)
    """Paths reported gone; forget them only if really gone (see the service)."""
    folder_gone: bool = False
    root_back: bool = False

    @property
    def touches_photos(self) -> bool:
        """Whether any photo may have been added, changed or removed."""
        return bool(self.to_index or self.to_forget or self.folder_gone)


def work_from(events: Iterable[WatchEvent]) -> Work:
    """Sort ``events`` into :class:`Work`; roots that come and go are logged."""
    work = Work()
    for e in events:
        if isinstance(e, RootGone):
            log.warning("folder_missing", root=str(e.path),
                        hint="its photos stay in the albums until it is back")
        elif isinstance(e, RootBack):
            log.info("folder_back", root=str(e.path))
            work.root_back = True
        elif isinstance(e, Change):
            if e.kind == "upsert":
                work.to_index.append(e.path)
            elif e.kind == "move" and e.dest is not None:
                work.to_index.append(e.dest)
                work.to_forget.append(e.path)
            elif e.is_dir:
                work.folder_gone = True
            else:
                work.to_forget.append(e.path)
    return work
