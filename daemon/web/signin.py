"""Signing in and out: the password form, its rate limit, and the session cookie."""

from __future__ import annotations

import structlog
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from daemon.web.auth import TooManyAttempts, current_password_hash, verify_password
from daemon.web.forms import read_form, text
from daemon.web.render import render
from daemon.web.state import COOKIE, session_of, set_session_cookie, web_state

log = structlog.get_logger(__name__)


def signin_page(request: Request) -> Response:
    """The password form."""
    return render(request, "signin.html", {"error": None})


async def signin_action(request: Request) -> Response:
    """Check the password (rate-limited per client) and start a signed-in session."""
    form = await read_form(request)
    st = web_state(request)
    client = request.client.host if request.client else "?"
    try:
        st.limiter.check(client)
    except TooManyAttempts as e:
        log.warning("web_signin_limited", client=client)
        return render(request, "signin.html", {"error": str(e)}, status=429)
    stored = current_password_hash(st.cfg.state_dir, st.cfg.web.password_file)
    if not stored or not verify_password(text(form, "password") or "", stored):
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
    response = RedirectResponse("/signin" if st.sign_in else "/", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response
