"""What every route shares, and how a request finds it: config, reading, sessions, undo.

One :class:`WebState` per app (``app.state.web``). A request's session is found (or
started) by the gate in :mod:`daemon.web.app`; its labels are read once per request.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response

from daemon.config import Config
from daemon.people import naming
from daemon.web.auth import Session, Sessions, SignInLimiter
from daemon.web.images import FaceImages
from daemon.web.library import LabelsState, Library

COOKIE = "facecluster_session"


@dataclass
class WebState:
    """What the routes share: config, reading, pictures, sessions and the undo list."""

    cfg: Config
    library: Library
    images: FaceImages
    sessions: Sessions
    limiter: SignInLimiter
    sign_in: bool
    """Whether visitors must sign in (any non-loopback bind)."""
    edits: list[naming.LabelsEdit] = field(default_factory=list)


def web_state(request: Request) -> WebState:
    """The app's shared state."""
    return request.app.state.web


def session_of(request: Request) -> Session | None:
    """The request's session (found, or started for a page view, by the gate)."""
    return getattr(request.state, "session", None)


def labels_of(request: Request) -> tuple[str, LabelsState]:
    """The labels file's digest and content for this request, read once.

    The digest is taken first: should the file change between the two reads, the forms
    carry the older digest and an edit is refused, never applied to unseen labels.
    """
    if not hasattr(request.state, "labels"):
        st = web_state(request)
        digest = naming.labels_digest(st.cfg.labels_file)
        request.state.labels = (digest, st.library.labels(digest))
    return request.state.labels


def set_session_cookie(request: Request, response: Response, session: Session) -> None:
    """Give the browser ``session``'s cookie (``Secure`` behind HTTPS)."""
    st = web_state(request)
    secure = request.url.scheme == "https" or st.cfg.web.behind_https
    response.set_cookie(COOKIE, session.id, max_age=int(st.sessions.ttl),
                        path="/", httponly=True, samesite="strict", secure=secure)
