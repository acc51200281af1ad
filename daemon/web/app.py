"""The web page's app: its routes, the session gate in front of them, and error pages.

Reading goes through :class:`~daemon.web.library.Library` (a read-only store) and every
edit through :mod:`daemon.people.naming`, the one writer of ``labels.toml``; nothing else is
written except the picture cache under the state dir. The routes live by job: pages
(:mod:`daemon.web.pages`), pictures (:mod:`daemon.web.pictures`), edits
(:mod:`daemon.web.actions`) and sign-in (:mod:`daemon.web.signin`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jinja2
import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from daemon.config import Config
from daemon.store import StoreError
from daemon.web import actions, pages, pictures, review, signin
from daemon.web.auth import (
    PasswordError,
    Sessions,
    SignInLimiter,
    is_forwarded,
    is_loopback,
    password_set,
)
from daemon.web.images import FaceImages
from daemon.web.library import Library, NotFound
from daemon.web.render import render
from daemon.web.security import Guard
from daemon.web.state import COOKIE, WebState, set_session_cookie, web_state

log = structlog.get_logger(__name__)

HERE = Path(__file__).parent
_PUBLIC = ("/signin", "/static/")
_PAGES = ("/", "/person/", "/status", "/signin", "/review")

ROUTES = [
    Route("/", pages.people_page),
    Route("/person/{pid:int}", pages.person_page),
    Route("/status", pages.status_page),
    Route("/review", review.review_page),
    Route("/review/answer", review.answer_action, methods=["POST"]),
    Route("/split/{pid:int}", review.split_page),
    Route("/split", review.split_action, methods=["POST"]),
    Route("/face/{fid:int}.jpg", pictures.face_picture),
    Route("/person/{pid:int}/{kind:str}.jpg", pictures.person_picture),
    Route("/photo/{fid:int}", pictures.photo_file),
    Route("/signin", signin.signin_page),
    Route("/signin", signin.signin_action, methods=["POST"]),
    Route("/signout", signin.signout_action, methods=["POST"]),
    Route("/name", actions.name_action, methods=["POST"]),
    Route("/merge", actions.merge_action, methods=["POST"]),
    Route("/hide", actions.hide_action, methods=["POST"]),
    Route("/exclude", actions.exclude_action, methods=["POST"]),
    Route("/undo", actions.undo_action, methods=["POST"]),
    Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
]


def needs_sign_in(request: Request) -> bool:
    """Whether this request must come from a signed-in session: always on a LAN bind;
    on a loopback one when it came through a reverse proxy (it carries forwarding
    headers) or from a client that is not this machine."""
    if web_state(request).sign_in:
        return True
    peer = request.client.host if request.client else ""
    return not is_loopback(peer) or is_forwarded(request.headers.keys())


async def _gate(request: Request, call_next: Callable) -> Response:
    """Find the session (a page view starts one: it carries the CSRF token) and, where
    sign-in is required, send anyone not signed in to the sign-in page."""
    st = web_state(request)
    session = st.sessions.get(request.cookies.get(COOKIE))
    fresh = None
    path = request.url.path
    page_view = request.method == "GET" and (
        path in _PAGES or (path.startswith("/person/") and path[8:].isdigit())
        or (path.startswith("/split/") and path[7:].isdigit())
    )
    if session is None and page_view:
        session = fresh = st.sessions.new()
    request.state.session = session
    request.state.sign_in = needs_sign_in(request)
    if request.state.sign_in and not (session and session.signed_in) \
            and not path.startswith(_PUBLIC):
        if page_view:
            response: Response = RedirectResponse("/signin", status_code=303)
        else:
            response = Response("sign in first", status_code=403, media_type="text/plain")
    else:
        response = await call_next(request)
    if fresh is not None:
        set_session_cookie(request, response, fresh)
    return response


def _error_page(status: int, title: str) -> Callable:
    async def handler(request: Request, exc: Exception) -> Response:
        text = exc.detail if isinstance(exc, HTTPException) else str(exc)
        if status >= 500:
            log.error("web_error", error=text)
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            return render(request, "message.html", {"title": title, "text": text,
                                                    "back": "/"}, status=status)
        return Response(f"{title}: {text}\n", status_code=status, media_type="text/plain")
    return handler


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return await _error_page(status, "Sorry")(request, exc)


def create_app(cfg: Config, *, sessions: Sessions | None = None,
               limiter: SignInLimiter | None = None) -> Starlette:
    """The page for ``cfg``. Refuses (PasswordError) a non-loopback bind without a password.

    ``sessions`` and ``limiter`` may be given with an injected clock (tests).
    """
    # behind_https: a reverse proxy serves the page, so every visitor comes from afar.
    sign_in = not is_loopback(cfg.web.listen) or cfg.web.behind_https
    if sign_in and not password_set(cfg.state_dir, cfg.web.password_file):
        why = (f"web.listen = {cfg.web.listen!r} reaches other machines"
               if not is_loopback(cfg.web.listen)
               else "web.behind_https = true puts it behind a reverse proxy")
        how = (f"web.password_file {cfg.web.password_file} is missing, unreadable or "
               "shorter than 8 characters" if cfg.web.password_file
               else "run `facecluster web passwd` first")
        raise PasswordError(
            f"{why}, so the page needs a password: {how}"
        )
    app = Starlette(
        routes=ROUTES,
        middleware=[
            Middleware(Guard, loopback_only=not sign_in),
            Middleware(BaseHTTPMiddleware, dispatch=_gate),
        ],
        exception_handlers={
            HTTPException: _http_error,
            NotFound: _error_page(404, "Not found"),
            OverflowError: _error_page(404, "Not found"),
            StoreError: _error_page(503, "No library yet"),
        },
    )
    app.state.web = WebState(
        cfg=cfg, library=Library(cfg),
        images=FaceImages(cfg.state_dir, cfg.detection.max_pixels),
        sessions=sessions or Sessions(), limiter=limiter or SignInLimiter(), sign_in=sign_in,
    )
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                             autoescape=True)  # every value HTML-escaped, always
    app.state.templates = Jinja2Templates(env=env)
    return app
