"""Lower the service's CPU and I/O priority, so photos are indexed only with spare capacity."""

from __future__ import annotations

import ctypes
import os
import platform

import structlog

log = structlog.get_logger(__name__)

_IOPRIO_SET = {"x86_64": 251, "aarch64": 30, "armv7l": 314, "armv6l": 314, "i686": 289}
_IOPRIO_WHO_PROCESS = 1
_IOPRIO_CLASS_IDLE = 3


def lower_priority(nice: int) -> None:
    """Run at niceness ``nice`` (never raised back) and, on Linux, in the idle I/O class.

    Worker processes started afterwards inherit both. Failures are logged, not raised:
    the unit file sets ``Nice=`` and ``IOSchedulingClass=idle`` as well.
    """
    try:
        current = os.nice(0)
        if nice > current:
            os.nice(nice - current)
    except OSError as e:
        log.warning("nice_failed", error=str(e))
    nr = _IOPRIO_SET.get(platform.machine())
    if platform.system() != "Linux" or nr is None:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syscall(nr, _IOPRIO_WHO_PROCESS, 0, _IOPRIO_CLASS_IDLE << 13) != 0:
            log.warning("ioprio_failed", error=os.strerror(ctypes.get_errno()))
    except (OSError, AttributeError) as e:
        log.warning("ioprio_failed", error=str(e))
