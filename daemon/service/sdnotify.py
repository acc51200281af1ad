"""A tiny, dependency-free implementation of systemd's sd_notify protocol.

systemd passes ``$NOTIFY_SOCKET`` (a filesystem path, or an abstract socket written with a
leading ``@``) to services of ``Type=notify``; the service sends newline-separated
``KEY=value`` datagrams to it. Outside systemd (launchd, a shell, tests without a socket)
the variable is absent and every call is a cheap no-op, so callers never need to check.
"""

from __future__ import annotations

import os
import socket

import structlog

log = structlog.get_logger(__name__)


def _address(value: str) -> str | bytes:
    """Turn ``$NOTIFY_SOCKET`` into an address for ``socket.sendto``."""
    if value.startswith("@"):
        # Linux abstract namespace: the name starts with a NUL byte instead of "@".
        return b"\0" + value[1:].encode()
    return value


def notify(*lines: str) -> bool:
    """Send ``lines`` (e.g. ``"READY=1"``, ``"STATUS=idle"``) to the service manager.

    Returns True if a datagram was sent, False when not running under a notify-aware
    manager. A failing send is logged and reported as False, never raised: losing a
    status line must not take the service down (the watchdog will notice a real hang).
    """
    target = os.environ.get("NOTIFY_SOCKET")
    if not target or not lines:
        return False
    payload = "\n".join(lines).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            # A manager that stops reading fills the socket's queue, and a blocking send
            # would then hang the main loop; a status line is not worth waiting for, so
            # a full queue drops it at once.
            sock.setblocking(False)
            sock.sendto(payload, _address(target))
    except OSError as e:  # including BlockingIOError for a full queue
        log.warning("sd_notify_failed", socket=target, error=str(e))
        return False
    return True


def ready(status: str | None = None) -> bool:
    """Tell the manager start-up is complete (``READY=1``), optionally with a status."""
    return notify("READY=1", *((f"STATUS={status}",) if status else ()))


def status(text: str) -> bool:
    """Set the one-line status shown by ``systemctl status``."""
    return notify(f"STATUS={text}")


def watchdog_ping() -> bool:
    """Tell the manager the main loop is alive (``WATCHDOG=1``)."""
    return notify("WATCHDOG=1")


def stopping() -> bool:
    """Tell the manager the service is shutting down (``STOPPING=1``)."""
    return notify("STOPPING=1")


def watchdog_interval() -> float | None:
    """Seconds between ``WATCHDOG=1`` pings, or None when no watchdog is configured.

    That is half of ``$WATCHDOG_USEC``, as sd_watchdog_enabled(3) recommends. When
    ``$WATCHDOG_PID`` is set and names another process, the watchdog is not ours.
    """
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("watchdog_usec_invalid", value=usec)
        return None
    if value <= 0:
        return None
    return value / 2_000_000
