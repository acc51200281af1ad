"""The edits: name, merge, hide, "not this person" and undo, each a change to labels.toml.

Every edit goes through :mod:`daemon.people.naming`, the one writer of ``labels.toml``, with the
digest of the file the page was drawn from: an edit against a file that changed
meanwhile (a hand edit) is refused with a page saying so, and nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from daemon.people import labels, naming
from daemon.web.forms import back, number, person_ids, read_form, text
from daemon.web.library import NotFound
from daemon.web.render import render
from daemon.web.state import WebState, web_state

log = structlog.get_logger(__name__)

UNDO_DEPTH = 20

Change = Callable[[FormData, str, WebState], tuple[naming.LabelsEdit, str]]
"""One edit: (form, the page's labels digest, state) -> (the edit, what was done)."""


async def _edit(request: Request, change: Change, default_back: str = "/") -> Response:
    """Run one labels edit from a form; conflicts and impossible edits get a clear page."""
    form = await read_form(request)
    st = web_state(request)
    digest = text(form, "digest")
    if not digest:
        raise HTTPException(400, "the form lacks the labels digest: reload the page")
    try:
        edit, done = change(form, digest, st)
    except naming.LabelsConflict as e:
        log.info("web_edit_conflict", error=str(e))
        return render(request, "message.html", {"title": "labels.toml changed",
                      "text": f"{e} The page was showing an older version.",
                      "back": back(form, default_back)}, status=409)
    except naming.NamingError as e:
        return render(request, "message.html", {"title": "Not possible", "text": str(e),
                      "back": back(form, default_back)}, status=400)
    if edit.changed:
        st.edits = [*st.edits, edit][-UNDO_DEPTH:]
        log.info("web_labels_edited", action=done)
    to = back(form, default_back)
    sep = "&" if "?" in to else "?"
    return RedirectResponse(f"{to}{sep}done={done}", status_code=303)


def _name(form: FormData, digest: str, st: WebState) -> tuple[naming.LabelsEdit, str]:
    ids = person_ids(form)
    name = text(form, "name") or ""
    edit = naming.name_people(st.cfg.labels_file, ids, name, expected_digest=digest)
    return edit, "merged" if len(ids) > 1 else "named"


def _merge(form: FormData, digest: str, st: WebState) -> tuple[naming.LabelsEdit, str]:
    if len(set(form.getlist("person"))) < 2:
        raise naming.NamingError("tick at least two people to merge")
    return _name(form, digest, st)


def _hide(form: FormData, digest: str, st: WebState) -> tuple[naming.LabelsEdit, str]:
    (pid,) = person_ids(form)[:1]
    hidden = text(form, "hidden") != "0"
    edit = naming.hide_person(st.cfg.labels_file, pid, hidden, expected_digest=digest)
    return edit, "hidden" if hidden else "shown"


def _exclude_entry(value: object, pid: int, st: WebState) -> str:
    """The exclude entry for a ticked ``face-N`` or ``photo-N`` (N: a face of ``pid``)."""
    kind, _, fid = (value if isinstance(value, str) else "").partition("-")
    face_id = number(fid, "entry")
    try:
        face = st.library.face(face_id)
    except NotFound as e:
        raise naming.NamingError(f"no face {face_id}") from e
    if face.person_id != pid:
        raise naming.NamingError(f"face {face_id} is not shown as this person any more")
    if kind == "face":
        return f"face-{face_id}"
    if kind == "photo":
        return labels.photo_entry(face.path, st.cfg.watch)
    raise HTTPException(400, "entry: expected face-N or photo-N")


def _exclude(form: FormData, digest: str, st: WebState) -> tuple[naming.LabelsEdit, str]:
    (pid,) = person_ids(form)[:1]
    entries = [_exclude_entry(v, pid, st) for v in form.getlist("entry")]
    if not entries:
        raise naming.NamingError("tick at least one face or photo")
    edit = naming.exclude(st.cfg.labels_file, pid, entries, expected_digest=digest)
    return edit, "excluded"


def _undo(form: FormData, digest: str, st: WebState) -> tuple[naming.LabelsEdit, str]:
    if not st.edits:
        raise naming.NamingError("nothing to undo")
    edit = naming.undo(st.cfg.labels_file, st.edits[-1])
    st.edits = st.edits[:-1]
    # The undo itself must not land on the undo list.
    return naming.LabelsEdit(edit.path, edit.before, edit.before), "undone"


async def name_action(request: Request) -> Response:
    """Name (or rename) the ticked people; several ticked are merged under the name."""
    return await _edit(request, _name)


async def merge_action(request: Request) -> Response:
    """Merge two or more ticked people under one name."""
    return await _edit(request, _merge)


async def hide_action(request: Request) -> Response:
    """Hide a person (no album), or show them again."""
    return await _edit(request, _hide)


async def exclude_action(request: Request) -> Response:
    """Mark faces or whole photos as not this person."""
    return await _edit(request, _exclude)


async def undo_action(request: Request) -> Response:
    """Undo this page's last edit (refused if labels.toml changed since)."""
    return await _edit(request, _undo)
