"""The page's outer guard: request size, allowed hosts and security headers.

A pure ASGI middleware in front of every route. It buffers a request body up to
:data:`MAX_BODY_BYTES` (forms here are a few hundred bytes) and answers 413 beyond;
on a loopback bind it accepts only loopback ``Host`` names, so a web page elsewhere
cannot reach the service through DNS rebinding; and it adds a strict
Content-Security-Policy (no inline script, nothing from other sites), ``nosniff``,
``frame-ancestors 'none'`` and ``no-referrer`` to every response. A body must arrive
within :data:`BODY_TIMEOUT` seconds (408 otherwise); the request head's own deadline is
in :mod:`daemon.web.connections`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from daemon.web.auth import is_forwarded

MAX_BODY_BYTES = 64 * 1024
BODY_TIMEOUT = 20.0
"""Seconds a request body may take to arrive (a form is a few hundred bytes): a body
sent a byte at a time must not hold its connection for ever."""
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "[::1]"}

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _host_name(scope: Scope) -> str:
    for key, value in scope.get("headers", []):
        if key == b"host":
            host = value.decode("latin-1").strip().lower()
            if host.startswith("["):
                return host.split("]", 1)[0] + "]"
            return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return ""


async def _plain(send: Send, status: int, text: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), *HEADERS]})
    await send({"type": "http.response.body", "body": text.encode()})


class _Disconnected(Exception):
    """The client went away while its body was read."""


class Guard:
    """Body limit, Host check (loopback binds) and security headers around ``app``."""

    def __init__(self, app: ASGIApp, *, loopback_only: bool,
                 max_body: int = MAX_BODY_BYTES, body_timeout: float = BODY_TIMEOUT) -> None:
        self.app, self.loopback_only, self.max_body = app, loopback_only, max_body
        self.body_timeout = body_timeout

    async def _body(self, receive: Receive) -> bytes | None:
        """The whole body, or None past the size limit."""
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                raise _Disconnected
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                return None
        return body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # A proxied request keeps the site's own Host name; it must sign in (see
        # daemon.web.app.needs_sign_in), which a rebinding page cannot.
        if self.loopback_only and _host_name(scope) not in LOOPBACK_HOSTS \
                and not is_forwarded(k.decode("latin-1") for k, _ in scope.get("headers", [])):
            await _plain(send, 421, "this page answers only on localhost")
            return
        try:
            body = await asyncio.wait_for(self._body(receive), self.body_timeout)
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            await _plain(send, 408, "the request body came too slowly")
            return
        except _Disconnected:
            await self.app(scope, receive, send)  # let the app see the disconnect
            return
        if body is None:
            await _plain(send, 413, "request too large")
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *(h for h in HEADERS if h[0] not in names)]
            await send(message)

        await self.app(scope, replay, with_headers)
