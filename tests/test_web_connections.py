"""Slow and many connections cannot take the page down: real sockets on 127.0.0.x.

Every loop is bounded (at most 80 sockets, deadlines of a few seconds) and all traffic
stays on the loopback interface (Linux routes the whole 127/8 there, so a test can
play several "addresses").
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from net import free_port

from daemon.config import from_dict
from daemon.web.connections import ConnectionBook, ConnectionLimits
from daemon.web.server import WebThread

HALF_HEAD = b"GET /signin HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


@contextlib.contextmanager
def _page(tmp_path: Path, limits: ConnectionLimits | None = None) -> Iterator[str]:
    port = free_port()
    cfg = from_dict({"watch": [str(tmp_path / "photos")], "state_dir": str(tmp_path / "state"),
                     "labels_file": str(tmp_path / "labels.toml"),
                     "web": {"enabled": True, "port": port}}, tmp_path)
    web = WebThread(cfg, limits) if limits else WebThread(cfg)
    web.start()
    try:
        deadline = time.monotonic() + 20
        while not (web._server and web._server.started):
            assert time.monotonic() < deadline, "the page did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/"
    finally:
        web.stop()


def _slow(url: str, count: int, addresses: int, first: int = 2) -> list[socket.socket]:
    """``count`` connections from 127.0.0.<first>.. that each send half a request head."""
    port = int(url.rsplit(":", 1)[1].strip("/"))
    out = []
    for i in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=5,
                                     source_address=(f"127.0.0.{first + i % addresses}", 0))
        s.sendall(HALF_HEAD)
        out.append(s)
    return out


def _get(url: str, source: str) -> int:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=5) as client:
        return client.get(url + "signin").status_code


def _closed_by_server(s: socket.socket, within: float) -> bool:
    s.settimeout(within)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_many_unfinished_requests_do_not_turn_others_away(tmp_path: Path):
    with _page(tmp_path) as url:
        slow = _slow(url, 70, addresses=10)
        try:
            time.sleep(0.3)  # let the server take them all in
            assert _get(url, "127.0.0.100") == 200
        finally:
            for s in slow:
                s.close()


def test_an_unfinished_request_head_is_cut_off_at_its_deadline(tmp_path: Path):
    limits = ConnectionLimits(header_timeout=1.0)
    with _page(tmp_path, limits) as url:
        slow = _slow(url, 5, addresses=5)
        trickle = _slow(url, 1, addresses=1, first=50)[0]
        try:
            started = time.monotonic()
            while time.monotonic() - started < 1.6:  # a byte every 0.2 s: still cut off
                with contextlib.suppress(OSError):
                    trickle.sendall(b"x")
                time.sleep(0.2)
            assert _closed_by_server(trickle, 2.0)
            assert all(_closed_by_server(s, 2.0) for s in slow)
            assert time.monotonic() - started < 4.5
            assert _get(url, "127.0.0.100") == 200
        finally:
            for s in [*slow, trickle]:
                s.close()


def test_one_address_cannot_hold_more_than_its_share(tmp_path: Path):
    # every address on this machine is loopback: count them per address here
    limits = ConnectionLimits(header_timeout=30.0, per_address=8, total=16,
                              loopback_shares=True)
    with _page(tmp_path, limits) as url:
        slow = _slow(url, 20, addresses=1)
        others = _slow(url, 6, addresses=6, first=20)
        try:
            time.sleep(0.3)
            closed = sum(_closed_by_server(s, 0.2) for s in slow)
            assert closed == 12  # the oldest ones went: eight are left
            assert not any(_closed_by_server(s, 0.1) for s in others)
            assert _get(url, "127.0.0.2") == 200  # the same address, a whole request
            assert _get(url, "127.0.0.100") == 200
        finally:
            for s in [*slow, *others]:
                s.close()


class _Conn:
    def __init__(self, waiting: bool) -> None:
        self.is_waiting = waiting

    def waiting(self) -> bool:
        return self.is_waiting


def test_the_book_drops_waiting_connections_before_busy_ones():
    book = ConnectionBook(ConnectionLimits(per_address=2, total=3))
    a1, a2 = _Conn(waiting=False), _Conn(waiting=True)
    assert book.admit(a1, "10.0.0.1") == [] and book.admit(a2, "10.0.0.1") == []
    a3 = _Conn(waiting=False)
    assert book.admit(a3, "10.0.0.1") == [a2]  # the busy one stays
    a4 = _Conn(waiting=False)
    assert book.admit(a4, "10.0.0.1") == [a4]  # both busy: the newcomer goes
    b1 = _Conn(waiting=False)
    assert book.admit(b1, "10.0.0.2") == []
    c1 = _Conn(waiting=False)
    assert book.admit(c1, "10.0.0.3") == [c1]  # full of busy connections
    b1.is_waiting = True
    assert book.admit(c1, "10.0.0.3") == [b1]
    assert len(book) == 3
    v6 = [_Conn(waiting=True) for _ in range(3)]
    book = ConnectionBook(ConnectionLimits(per_address=2, total=10))
    assert [book.admit(c, f"2001:db8::{i + 1}") for i, c in enumerate(v6)] == [[], [], [v6[0]]]


def test_a_proxy_on_this_machine_is_held_only_to_the_total():
    book = ConnectionBook(ConnectionLimits(per_address=2, total=5))
    proxied = [_Conn(waiting=False) for _ in range(6)]
    assert [book.admit(c, "127.0.0.1") for c in proxied[:5]] == [[]] * 5
    assert book.admit(proxied[5], "::1") == [proxied[5]]  # the total still holds


@pytest.fixture(autouse=True)
def _bounded(request):
    """Each test here finishes in seconds (a hang is a failure, not a stuck run)."""
    started = time.monotonic()
    yield
    assert time.monotonic() - started < 60


def test_a_body_that_trickles_in_is_refused_after_its_deadline():
    from daemon.web.security import Guard

    sent: list[dict] = []
    reached: list[bool] = []

    async def app(scope, receive, send) -> None:
        reached.append(True)

    async def receive() -> dict:
        if not sent:
            sent.append({})
            return {"type": "http.request", "body": b"x", "more_body": True}
        await asyncio.sleep(30)  # the rest never comes
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    guard = Guard(app, loopback_only=False, body_timeout=0.2)
    scope = {"type": "http", "method": "POST", "headers": [(b"host", b"127.0.0.1")]}
    started = time.monotonic()
    asyncio.run(guard(scope, receive, send))
    assert time.monotonic() - started < 5
    assert not reached and sent[1]["status"] == 408
