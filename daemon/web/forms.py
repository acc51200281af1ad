"""What a request brings in: numbers from the query, and posted forms after the CSRF check."""

from __future__ import annotations

import re

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request

from daemon.web.auth import csrf_ok
from daemon.web.state import session_of

_NEXT = re.compile(r"/(?:person/[0-9]{1,12}|split/[0-9]{1,12}|status|review)?"
                   r"(?:\?page=[0-9]{1,6})?")
"""Where a form may send the browser back to: only the page's own pages."""


def number(value: str | None, what: str, default: int | None = None) -> int:
    """A non-negative number from the request (400 otherwise); ``default`` when absent."""
    if value is None and default is not None:
        return default
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 12:
        raise HTTPException(400, f"{what}: expected a number")
    return int(value)


async def read_form(request: Request) -> FormData:
    """The posted form, after the CSRF check (403 without the session's token)."""
    try:
        form = await request.form(max_files=0, max_fields=200)
    except Exception as e:  # noqa: BLE001 - any malformed body is the client's error
        raise HTTPException(400, "malformed form") from e
    token = form.get("csrf")
    if not csrf_ok(session_of(request), token if isinstance(token, str) else None):
        raise HTTPException(403, "missing or wrong form token: reload the page and try again")
    return form


def text(form: FormData, key: str) -> str | None:
    """A text field (None when absent or an upload)."""
    value = form.get(key)
    return value if isinstance(value, str) else None


def back(form: FormData, default: str) -> str:
    """The page to return to: the form's ``next`` if it is one of ours, else ``default``."""
    nxt = text(form, "next") or default
    return nxt if _NEXT.fullmatch(nxt) else default


def person_ids(form: FormData) -> list[int]:
    """The ticked people (400 when none, or absurdly many)."""
    values = form.getlist("person")
    if not values or len(values) > 1000:
        raise HTTPException(400, "choose at least one person")
    return [number(v if isinstance(v, str) else None, "person") for v in values]
