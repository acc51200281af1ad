"""Logging set-up: structlog, human-readable on a terminal, JSON lines otherwise.

Every module gets its logger with ``structlog.get_logger(__name__)`` and logs events as
short snake_case names with key-value fields, e.g. ``log.info("photo_indexed", faces=3)``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Protocol

import structlog


class _Line(Protocol):
    def clear(self) -> None: ...


class _Stderr:
    """``sys.stderr`` as it is at each write, with a progress line cleared first, so a
    log line never lands glued to the end of the bar (the bar redraws at its next
    update)."""

    line: _Line | None = None

    def write(self, text: str) -> int:
        if self.line is not None:
            self.line.clear()
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


_stderr = _Stderr()
_setting: tuple[str, bool] | None = None


def hold_line(line: _Line | None) -> None:
    """Tell the log which progress line to clear before it writes (None: no more)."""
    _stderr.line = line


def current() -> tuple[str, bool] | None:
    """(level, json) as last configured (None if never): what worker processes must
    copy, so that a command that prints warnings only gets no info lines from them."""
    return _setting


def configure(level: str = "info", *, json: bool | None = None) -> None:
    """Configure structlog for the process.

    ``json`` defaults to "stderr is not a terminal", so a service under systemd or
    launchd writes one JSON object per line while a person at a shell gets colour.
    """
    global _setting
    if json is None:
        json = not sys.stderr.isatty()
    _setting = (level, json)
    numeric = logging.getLevelName(level.upper())
    processors: list = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if json:
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        processors += [structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=_stderr),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )


def leave_now(code: int = 0) -> None:
    """End the process without the interpreter's teardown, its output flushed first.

    Freeing numpy, OpenCV, the models and the rest module by module costs ~0.1-0.2 s
    of CPU at every exit, and nothing needs it once the work is written: an index
    worker's results went out through its pipe, a ``scan``'s store is closed.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
