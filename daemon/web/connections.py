"""Who may hold a connection to the page, and for how long: a guard below HTTP.

uvicorn times out idle keep-alive connections but not a request whose head never ends
(each byte that trickles in resets its timer), and its ``limit_concurrency`` counts such
connections too: a few dozen sockets that each send half a header line turn everyone
else away with 503. So the page is served by :class:`uvicorn`'s own h11 protocol with
three rules added (see :func:`guarded_protocol`):

- a request head must be complete within ``header_timeout`` seconds of the connection
  opening, or of the previous response ending (a hard deadline, not reset by data);
- one address (an IPv6 /64 counts as one) holds at most ``per_address`` connections
  (this machine's own, a reverse proxy's, are not held to it);
- at most ``total`` connections in all.

A connection over a limit does not turn the newcomer away while a connection that is
only waiting (an unfinished request head, or idle between requests) is open: the oldest
waiting one is closed instead, from the same address when that address is over its
share. So a flood of slow sockets keeps the page answering for everyone who sends a
whole request (the family's browser, signed in or not); only when every slot is busy
with a real request is a newcomer closed. Request bodies have their own deadline in
:class:`daemon.web.security.Guard`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from uvicorn.protocols.http.h11_impl import H11Protocol

from daemon.web.auth import address_key, is_loopback

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ConnectionLimits:
    """How long a request head may take and how many connections may be open."""

    header_timeout: float = 10.0
    per_address: int = 16
    """Browsers open six per site; a NAS page has a few users."""
    total: int = 128
    loopback_shares: bool = False
    """Whether this machine's own addresses count per address too. Off: a reverse proxy
    on this machine opens one connection per request it forwards (dozens at once for
    a page of pictures over HTTP/2), and it reads request heads itself before it
    forwards them, so slow heads do not come through it; the total still applies."""


class Connection(Protocol):
    """What the book needs of a connection."""

    def waiting(self) -> bool:
        """Whether it has no request in progress (unfinished head, or idle)."""
        ...


class ConnectionBook:
    """The open connections by address, oldest first; decides who goes for a newcomer."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self._address: dict[Connection, str] = {}  # insertion order: oldest first

    def __len__(self) -> int:
        return len(self._address)

    def admit(self, conn: Connection, address: str) -> list[Connection]:
        """Add ``conn`` from ``address``; returns the connections to close (``conn``
        itself when no waiting one can make room)."""
        key = address_key(address)
        drop: list[Connection] = []
        same = [c for c, a in self._address.items() if a == key]
        shares = self.limits.loopback_shares or not is_loopback(key)
        if shares and len(same) >= self.limits.per_address:
            drop.append(self._oldest_waiting(same) or conn)
        if conn not in drop and len(self._address) - len(drop) >= self.limits.total:
            others = [c for c in self._address if c not in drop]
            drop.append(self._oldest_waiting(others) or conn)
        if conn not in drop:
            self._address[conn] = key
        for c in drop:
            self._address.pop(c, None)
        return drop

    def remove(self, conn: Connection) -> None:
        """Forget a closed connection."""
        self._address.pop(conn, None)

    @staticmethod
    def _oldest_waiting(conns: list[Connection]) -> Connection | None:
        return next((c for c in conns if c.waiting()), None)


def guarded_protocol(limits: ConnectionLimits) -> type[H11Protocol]:
    """uvicorn's h11 protocol with the head deadline and connection limits of ``limits``
    (one book per server: pass the class as ``uvicorn.Config(http=...)``)."""
    book = ConnectionBook(limits)

    class GuardedH11Protocol(H11Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._head_timer: asyncio.TimerHandle | None = None

        def waiting(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()
            client = self.client[0] if self.client else "?"
            for conn in book.admit(self, client):
                # debug: a flood of connections must not become a flood of log lines
                log.debug("web_connection_dropped", client=client, open=len(book))
                conn._close()  # type: ignore[attr-defined]

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            book.remove(self)
            super().connection_lost(exc)

        def handle_events(self) -> None:
            before = self.cycle
            super().handle_events()
            if self.cycle is not before:  # a whole request head arrived
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.waiting() and not self.transport.is_closing():
                self._arm()  # the next request head has the same deadline

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(limits.header_timeout, self._head_late)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_late(self) -> None:
            self._head_timer = None
            if self.waiting():
                self._close()

        def _close(self) -> None:
            self._disarm()
            book.remove(self)
            if not self.transport.is_closing():
                self.transport.close()

    return GuardedH11Protocol

