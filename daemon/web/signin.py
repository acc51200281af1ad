"""Signing in and out: the password form, its rate limit, and the session cookie."""

from __future__ import annotations

import structlog
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from daemon.web.auth import (
    TooManyAttempts,
    check_password,
    forwarded_client,
    is_forwarded,
    is_loopback,
    password_set,
)
from daemon.web.forms import read_form, text
from daemon.web.render import render
from daemon.web.state import COOKIE, session_of, set_session_cookie, web_state

log = structlog.get_logger(__name__)


NO_PASSWORD = "no password is set for this page: run `facecluster web passwd` first"


def client_address(request: Request) -> str:
    """Who is signing in: the peer, or for a reverse proxy on this machine the client
    it names (else everyone behind the proxy would share one rate limit)."""
    peer = request.client.host if request.client else "?"
    if is_loopback(peer) and is_forwarded(request.headers.keys()):
        return forwarded_client(request.headers) or peer
    return peer


def signin_page(request: Request) -> Response:
    """The password form."""
    cfg = web_state(request).cfg
    ready = password_set(cfg.state_dir, cfg.web.password_file)
    return render(request, "signin.html", {"error": None if ready else NO_PASSWORD})


async def signin_action(request: Request) -> Response:
    """Check the password (rate-limited per client) and start a signed-in session."""
    form = await read_form(request)
    st = web_state(request)
    client = client_address(request)
    try:
        st.limiter.check(client)
    except TooManyAttempts as e:
        log.warning("web_signin_limited", client=client)
        return render(request, "signin.html", {"error": str(e)}, status=429)
    web = st.cfg.web
    if not password_set(st.cfg.state_dir, web.password_file):
        return render(request, "signin.html", {"error": NO_PASSWORD}, status=403)
    if not check_password(st.cfg.state_dir, web.password_file, text(form, "password") or ""):
        st.limiter.failed(client)
        log.warning("web_signin_failed", client=client)
        return render(request, "signin.html", {"error": "wrong password"}, status=403)
    st.limiter.succeeded(client)
    old = session_of(request)
    if old is not None:
        st.sessions.drop(old.id)  # a new id on sign-in: no session fixation
    response = RedirectResponse("/", status_code=303)
    set_session_cookie(request, response, st.sessions.new(signed_in=True))
    return response


async def signout_action(request: Request) -> Response:
    """End the session."""
    await read_form(request)
    st = web_state(request)
    session = session_of(request)
    if session is not None:
        st.sessions.drop(session.id)
    to = "/signin" if getattr(request.state, "sign_in", st.sign_in) else "/"
    response = RedirectResponse(to, status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response
