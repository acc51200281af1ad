"""The edits: name, merge, hide, "not this person" and undo, each a change to labels.toml.

Every edit goes through :mod:`daemon.people.naming`, the one writer of ``labels.toml``, with the
digest of the file the page was drawn from: an edit against a file that changed
meanwhile (a hand edit) is refused with a page saying so, and nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import structlog
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from daemon.people import labels, naming
from daemon.web.forms import back, number, person_ids, read_form, text
from daemon.web.library import LabelsState, NotFound
from daemon.web.render import render
from daemon.web.state import WebState, labels_of, web_state

log = structlog.get_logger(__name__)

UNDO_DEPTH = 20

Change = Callable[[FormData, str, WebState], tuple[naming.LabelsEdit, str]]
"""One edit: (form, the page's labels digest, state) -> (the edit, what was done)."""
PeopleChange = Callable[..., tuple[naming.LabelsEdit, str]]
"""An edit of ticked people: a :data:`Change` that also takes ``now=``, labels.toml as
this request read it (:func:`labels_of`), so who is known and who shares a name come
from one reading of the file."""


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


async def _edit_people(request: Request, change: PeopleChange) -> Response:
    """:func:`_edit` for an edit of ticked people, with the labels this request read."""
    _, now = labels_of(request)
    return await _edit(request, partial(change, now=now))


def _known(form: FormData, st: WebState, now: LabelsState) -> list[int]:
    """The ticked people, each one the store knows (a made-up id names nobody), with
    everyone who shares a name with them: merged people are one person on the page, and
    an edit of them is an edit of all (as ``facecluster name`` does with a name)."""
    ids = person_ids(form)
    known = st.library.known_ids()
    for pid in ids:
        if pid not in known:
            raise naming.NamingError(
                f"there is no {labels.person_key(pid)}: reload the page to see who there is")
    out: list[int] = []
    for pid in ids:
        out += [m for m in st.library.members(pid, now) if m not in out]
    return out


def _each(digest: str, steps: list[Callable[[str], naming.LabelsEdit]]) -> naming.LabelsEdit:
    """Run edits one after another, each against the file the previous one wrote; the
    result is one edit (one undo) from the first's before to the last's after."""
    edits: list[naming.LabelsEdit] = []
    for step in steps:
        edits.append(step(edits[-1].digest if edits else digest))
    return naming.LabelsEdit(edits[0].path, edits[0].before, edits[-1].after)


def _name(form: FormData, digest: str, st: WebState, *,
          now: LabelsState) -> tuple[naming.LabelsEdit, str]:
    ticked = len(set(form.getlist("person")))
    ids = _known(form, st, now)
    edit = naming.name_people(st.cfg.labels_file, ids, text(form, "name") or "",
                              expected_digest=digest)
    return edit, "merged" if ticked > 1 else "named"


def _merge(form: FormData, digest: str, st: WebState, *,
           now: LabelsState) -> tuple[naming.LabelsEdit, str]:
    if len(set(form.getlist("person"))) < 2:
        raise naming.NamingError("tick at least two people to merge")
    return _name(form, digest, st, now=now)


def _hide(form: FormData, digest: str, st: WebState, *,
          now: LabelsState) -> tuple[naming.LabelsEdit, str]:
    ids = _known(form, st, now)
    hidden = text(form, "hidden") != "0"
    path = st.cfg.labels_file
    if not hidden:  # hidden together, they are shown together again (and merge again)
        people = now.labels.people
        names = {people[pid].name for pid in ids if pid in people and people[pid].name}
        known = st.library.known_ids()
        ids += sorted(pid for pid, lab in people.items()
                      if lab.name in names and lab.hidden and pid in known and pid not in ids)
    edit = _each(digest, [
        lambda d, pid=pid: naming.hide_person(path, pid, hidden, expected_digest=d)
        for pid in ids])
    return edit, "hidden" if hidden else "shown"


def _exclude_entries(value: object, members: tuple[int, ...],
                     st: WebState) -> list[tuple[int, str]]:
    """(whose, entry) for a ticked ``face-N`` or ``photo-N`` (N: a face of ``members``)."""
    kind, _, fid = (value if isinstance(value, str) else "").partition("-")
    face_id = number(fid, "entry")
    try:
        face = st.library.face(face_id)
    except NotFound as e:
        raise naming.NamingError(f"no face {face_id}") from e
    owner = face.person_id
    if owner not in members:
        raise naming.NamingError(f"face {face_id} is not shown as this person any more")
    if kind == "face":
        return [(owner, f"face-{face_id}")]
    if kind != "photo":
        raise HTTPException(400, "entry: expected face-N or photo-N")
    entry = labels.photo_entry(face.path, st.cfg.watch)
    try:
        return [(owner, naming.check_entry(entry))]
    except naming.NamingError:
        # A path labels.toml will not hold (a newline in a file name, say): every face of
        # theirs in the photo instead, which leaves the photo out of their album alike.
        return [(owner, f"face-{f.id}") for f in st.library.faces_in_photo(owner, face.path)]


def _exclude(form: FormData, digest: str, st: WebState, *,
             now: LabelsState) -> tuple[naming.LabelsEdit, str]:
    members = tuple(_known(form, st, now))
    by_owner: dict[int, list[str]] = {}
    for value in form.getlist("entry"):
        for owner, entry in _exclude_entries(value, members, st):
            by_owner.setdefault(owner, []).append(entry)
    if not by_owner:
        raise naming.NamingError("tick at least one face or photo")
    path = st.cfg.labels_file
    edit = _each(digest, [
        lambda d, pid=pid, entries=entries: naming.exclude(path, pid, entries,
                                                          expected_digest=d)
        for pid, entries in by_owner.items()])
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
    return await _edit_people(request, _name)


async def merge_action(request: Request) -> Response:
    """Merge two or more ticked people under one name."""
    return await _edit_people(request, _merge)


async def hide_action(request: Request) -> Response:
    """Hide a person (no album), or show them again."""
    return await _edit_people(request, _hide)


async def exclude_action(request: Request) -> Response:
    """Mark faces or whole photos as not this person."""
    return await _edit_people(request, _exclude)


async def undo_action(request: Request) -> Response:
    """Undo this page's last edit (refused if labels.toml changed since)."""
    return await _edit(request, _undo)
