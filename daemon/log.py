"""Logging set-up: structlog, human-readable on a terminal, JSON lines otherwise.

Every module gets its logger with ``structlog.get_logger(__name__)`` and logs events as
short snake_case names with key-value fields, e.g. ``log.info("photo_indexed", faces=3)``.
"""

from __future__ import annotations

import logging
import sys

import structlog


def configure(level: str = "info", *, json: bool | None = None) -> None:
    """Configure structlog for the process.

    ``json`` defaults to "stderr is not a terminal", so a service under systemd or
    launchd writes one JSON object per line while a person at a shell gets colour.
    """
    if json is None:
        json = not sys.stderr.isatty()
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
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
