"""One running service per state dir, enforced with ``flock`` on ``facecluster.lock``.

``flock`` locks belong to the open file and the kernel drops them when the holder dies,
so a lock file left behind by a killed process never blocks the next start: only a
process that is really alive holds the lock. The file's text (pid, host, start time) is
only there to say *who* holds it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

LOCK_NAME = "facecluster.lock"


class AlreadyRunning(RuntimeError):
    """Another process holds the state dir's lock."""

    def __init__(self, lock_path: Path, owner: LockOwner | None) -> None:
        if owner is None:
            who = "another process (owner unknown)"
        else:
            who = f"pid {owner.pid} on {owner.host} (started {owner.started})"
        super().__init__(
            f"facecluster is already running for this state dir: {lock_path} is held by {who}"
        )
        self.lock_path = lock_path
        self.owner = owner


@dataclass(frozen=True)
class LockOwner:
    """Who wrote the lock file."""

    pid: int
    host: str
    started: str
    """ISO 8601 UTC time the lock was taken."""


def read_owner(lock_path: Path) -> LockOwner | None:
    """The owner recorded in ``lock_path``, or None if absent or unreadable."""
    try:
        data = json.loads(lock_path.read_text(encoding="utf-8"))
        return LockOwner(pid=int(data["pid"]), host=str(data["host"]), started=str(data["started"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


class StateLock:
    """An acquired lock on a state dir; call :meth:`release` (or use :func:`hold`)."""

    def __init__(self, path: Path, handle: IO[str]) -> None:
        self.path = path
        self._handle: IO[str] | None = handle

    def release(self) -> None:
        """Unlock and close. The file stays: removing it would race a starting process."""
        if self._handle is None:
            return
        try:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
        finally:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> StateLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire(state_dir: Path) -> StateLock:
    """Take the single-instance lock of ``state_dir`` (created if missing).

    Raises :class:`AlreadyRunning` naming the holder's pid if another process has it.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / LOCK_NAME
    # "a+" so that opening never truncates the owner's text before we hold the lock.
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - kept open while locked
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise AlreadyRunning(path, read_owner(path)) from None
    except OSError:
        handle.close()
        raise
    owner = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps(owner) + "\n")
    handle.flush()
    return StateLock(path, handle)


@contextmanager
def hold(state_dir: Path) -> Iterator[StateLock]:
    """Context manager form of :func:`acquire`."""
    lock = acquire(state_dir)
    try:
        yield lock
    finally:
        lock.release()
