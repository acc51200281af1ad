"""A one-line terminal progress bar for ``facecluster scan``, with no dependency.

It shows count/total, a bar, the percentage, the rate and the ETA, plus any extra fields
the caller passes (``faces=87``). It redraws at most every ``min_interval`` seconds, so a
fast loop does not spend its time writing to the terminal, and it draws nothing at all
when the stream is not a terminal: under systemd or in a pipe the logs are the record.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TextIO

from daemon import log as logsetup

_CLEAR_TO_EOL = "\x1b[K"
_BAR_WIDTH = 20
_DEFAULT_COLUMNS = 80


def format_duration(seconds: float) -> str:
    """A short human duration: ``42s``, ``3m05s``, ``2h07m``."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def format_line(
    count: int,
    total: int | None,
    elapsed: float,
    *,
    unit: str = "photos",
    fields: Mapping[str, object] | None = None,
    width: int = _DEFAULT_COLUMNS,
) -> str:
    """The text of the progress line, at most ``width - 1`` characters.

    The rate is the average since the start (steadier than an instantaneous rate when
    photos vary wildly in size); the ETA follows from it when the total is known.
    """
    rate = count / elapsed if elapsed > 0 else 0.0
    parts: list[str] = []
    bar = ""
    if total is not None and total > 0:
        done = min(count / total, 1.0)
        filled = int(done * _BAR_WIDTH)
        bar = "[" + "#" * filled + "-" * (_BAR_WIDTH - filled) + "]"
        parts.append(f"{count}/{total}")
        parts.append(bar)
        parts.append(f"{done * 100:5.1f}%")
    else:
        parts.append(f"{count} {unit}")
    parts.append(f"{rate:.1f} {unit}/s" if rate > 0 else f"- {unit}/s")
    if total is not None and total > 0 and count < total:
        eta = (total - count) / rate if rate > 0 else math.inf
        parts.append(f"ETA {format_duration(eta)}")
    else:
        parts.append(format_duration(elapsed))
    parts.extend(f"{k}={v}" for k, v in (fields or {}).items())
    line = "  ".join(parts)
    if bar and len(line) >= width:
        # The numbers matter more than the picture: drop the bar before truncating.
        parts.remove(bar)
        line = "  ".join(parts)
    # Keep one column free: writing into the last column wraps on some terminals,
    # and a wrapped line can no longer be redrawn in place with "\r".
    return line[: max(width - 1, 0)]


def _columns(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns or _DEFAULT_COLUMNS
    except (AttributeError, OSError, ValueError):
        return _DEFAULT_COLUMNS


class Progress:
    """A progress line redrawn in place on a terminal.

    Use as a context manager, or call :meth:`close` at the end::

        with Progress(len(paths)) as bar:
            for path in paths:
                ...
                bar.update(faces=total_faces)
    """

    def __init__(
        self,
        total: int | None,
        *,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        unit: str = "photos",
        min_interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``stream`` defaults to ``sys.stderr``; ``enabled=None`` means "stream is a tty"."""
        self.total = total
        self.stream: TextIO = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self.unit = unit
        self.min_interval = min_interval
        self.count = 0
        self.fields: dict[str, object] = {}
        self._clock = clock
        self._start = clock()
        self._last_draw = -math.inf
        self._drawn = False
        self._closed = False
        self._holds_log = self.enabled and self.stream is sys.stderr
        if self._holds_log:
            logsetup.hold_line(self)  # log lines clear the bar first, never glue onto it

    def update(self, n: int = 1, **fields: object) -> None:
        """Count ``n`` more items and remember ``fields``; redraw if enough time has passed."""
        self.count += n
        self.fields.update(fields)
        if not self.enabled or self._closed:
            return
        now = self._clock()
        if now - self._last_draw >= self.min_interval:
            self._draw(now)

    def clear(self) -> None:
        """Erase the line (e.g. before printing a message); the next update redraws it."""
        if self.enabled and self._drawn and not self._closed:
            self.stream.write("\r" + _CLEAR_TO_EOL)
            self.stream.flush()
            self._drawn = False
            self._last_draw = -math.inf

    def close(self) -> None:
        """Draw the final state and end the line. Safe to call more than once."""
        if self._closed:
            return
        if self.enabled:
            self._draw(self._clock())
            self.stream.write("\n")
            self.stream.flush()
        if self._holds_log:
            logsetup.hold_line(None)
        self._closed = True

    def _draw(self, now: float) -> None:
        line = format_line(
            self.count,
            self.total,
            now - self._start,
            unit=self.unit,
            fields=self.fields,
            width=_columns(self.stream),
        )
        self.stream.write("\r" + line + _CLEAR_TO_EOL)
        self.stream.flush()
        self._last_draw = now
        self._drawn = True

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
