"""Drawing a page from a template, with what every page shows (token, labels, messages)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from daemon.web.state import labels_of, session_of, web_state

MESSAGES = {
    "named": "Name saved.", "merged": "People merged under one name.",
    "hidden": "Person hidden.", "shown": "Person shown again.",
    "excluded": "Marked as not this person.", "undone": "Last change undone.",
    "answered": "Answer saved; it applies at the next clustering.",
}
"""The note shown after an edit, by the ``done`` query parameter it redirects with."""


def render(request: Request, name: str, context: dict, status: int = 200) -> Response:
    """Template ``name`` with ``context`` and the page-wide values; never cached."""
    st = web_state(request)
    session = session_of(request)
    digest, lab = labels_of(request)
    signed_in = bool(session and session.signed_in)
    sign_in = getattr(request.state, "sign_in", st.sign_in)
    # labels.toml's errors carry its path and the user's keys: not for strangers.
    trusted = signed_in or not sign_in
    context = {
        "csrf": session.csrf if session else "", "digest": digest,
        "labels_error": lab.error if trusted else None, "can_undo": trusted and bool(st.edits),
        "signed_in": signed_in, "sign_in": sign_in,
        "message": MESSAGES.get(request.query_params.get("done", "")), **context,
    }
    templates: Jinja2Templates = request.app.state.templates
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers["cache-control"] = "no-store"
    return response
