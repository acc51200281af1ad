"""The web page's routes: people, a person, status, pictures, sign-in and the edits.

Reading goes through :class:`~daemon.web.library.Library` (a read-only store) and every
edit through :mod:`daemon.naming`, the one writer of ``labels.toml``; nothing else is
written except the picture cache under the state dir. Pictures are addressed by face or
person id only, never by a path from the request. Each form carries the session's CSRF
token and the digest of the labels file the page was drawn from, so an edit made
against a file that changed meanwhile (a hand edit) is refused.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import structlog
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from daemon import naming
from daemon.config import Config
from daemon.store import StoreError
from daemon.web.auth import (
    Session,
    Sessions,
    SignInLimiter,
    TooManyAttempts,
    csrf_ok,
    is_loopback,
    read_password_hash,
    verify_password,
)
from daemon.web.images import FaceImages, NoPicture
from daemon.web.library import LabelsState, Library, NotFound, paginate
from daemon.web.security import Guard

log = structlog.get_logger(__name__)

HERE = Path(__file__).parent
COOKIE = "facecluster_session"
PEOPLE_PER_PAGE = 48
FACES_PER_PAGE = 60
MONTAGE_FACES = 9
UNDO_DEPTH = 20
MESSAGES = {
    "named": "Name saved.", "merged": "People merged under one name.",
    "hidden": "Person hidden.", "shown": "Person shown again.",
    "excluded": "Marked as not this person.", "undone": "Last change undone.",
}
_NEXT = re.compile(r"/(?:person/[0-9]{1,12}|status)?(?:\?page=[0-9]{1,6})?")


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


# -- request helpers -----------------------------------------------------------------


def _state(request: Request) -> WebState:
    return request.app.state.web


def _session(request: Request) -> Session | None:
    return getattr(request.state, "session", None)  # found (or started) by _gate


def _int(value: str | None, what: str, default: int | None = None) -> int:
    if value is None and default is not None:
        return default
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 12:
        raise HTTPException(400, f"{what}: expected a number")
    return int(value)


async def _form(request: Request) -> FormData:
    """The posted form, after the CSRF check (403 without the session's token)."""
    try:
        form = await request.form(max_files=0, max_fields=200)
    except Exception as e:  # noqa: BLE001 - any malformed body is the client's error
        raise HTTPException(400, "malformed form") from e
    token = form.get("csrf")
    if not csrf_ok(_session(request), token if isinstance(token, str) else None):
        raise HTTPException(403, "missing or wrong form token: reload the page and try again")
    return form


def _text(form: FormData, key: str) -> str | None:
    value = form.get(key)
    return value if isinstance(value, str) else None


def _back(form: FormData, default: str) -> str:
    nxt = _text(form, "next") or default
    return nxt if _NEXT.fullmatch(nxt) else default


def _labels(request: Request) -> tuple[str, LabelsState]:
    """The labels file's digest and content for this request, read once.

    The digest is taken first: should the file change between the two reads, the forms
    carry the older digest and an edit is refused, never applied to unseen labels.
    """
    if not hasattr(request.state, "labels"):
        st = _state(request)
        digest = naming.labels_digest(st.cfg.labels_file)
        request.state.labels = (digest, st.library.labels(digest))
    return request.state.labels


def _render(request: Request, name: str, context: dict, status: int = 200) -> Response:
    st = _state(request)
    session = _session(request)
    digest, lab = _labels(request)
    context = {
        "csrf": session.csrf if session else "", "digest": digest,
        "labels_error": lab.error, "can_undo": bool(st.edits),
        "signed_in": bool(session and session.signed_in), "sign_in": st.sign_in,
        "message": MESSAGES.get(request.query_params.get("done", "")), **context,
    }
    templates: Jinja2Templates = request.app.state.templates
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers["cache-control"] = "no-store"
    return response


# -- pages ------------------------------------------------------------------------------
# Plain functions, not coroutines: Starlette runs them in its thread pool, so a slow
# query on a big library never holds up the event loop (and the pictures behind it).


def people_page(request: Request) -> Response:
    st = _state(request)
    _, lab = _labels(request)
    page = paginate(st.library.people(lab),
                    _int(request.query_params.get("page"), "page", 1), PEOPLE_PER_PAGE)
    unnamed = sum(1 for p in st.library.people(lab) if not p.name and not p.hidden)
    return _render(request, "people.html", {"page": page, "unnamed": unnamed})


def person_page(request: Request) -> Response:
    st = _state(request)
    pid = request.path_params["pid"]
    _, lab = _labels(request)
    person = st.library.person(pid, lab)
    number = _int(request.query_params.get("page"), "page", 1)
    pages = max(1, -(-person.faces // FACES_PER_PAGE))
    number = min(max(1, number), pages)
    faces = st.library.person_faces(pid, (number - 1) * FACES_PER_PAGE, FACES_PER_PAGE)
    people = {p.id: p for p in st.library.people(lab)}
    similar = [(people[i], s) for i, s in st.library.similar(pid) if i in people]
    return _render(request, "person.html", {
        "person": person, "faces": faces, "number": number, "pages": pages,
        "similar": similar, "label": lab.labels.label(pid),
    })


def status_page(request: Request) -> Response:
    from daemon.status import read_service_status  # the service's status file reader

    st = _state(request)
    return _render(request, "status.html", {
        "service": read_service_status(st.cfg.state_dir), "counts": st.library.counts(),
        "failed": st.library.failed(), "labels_file": st.cfg.labels_file,
    })


# -- pictures -----------------------------------------------------------------------------


def _jpeg(data: bytes, max_age: int = 86400) -> Response:
    # A face crop never changes (face ids are not reused); a person's pictures do.
    return Response(data, media_type="image/jpeg",
                    headers={"cache-control": f"private, max-age={max_age}"})


def face_picture(request: Request) -> Response:
    st = _state(request)
    face = st.library.face(request.path_params["fid"])
    try:
        return _jpeg(st.images.crop(face, st.library.check_inside(face.path)))
    except NoPicture as e:
        raise HTTPException(404, "no picture") from e


def person_picture(request: Request) -> Response:
    st = _state(request)
    pid, kind = request.path_params["pid"], request.path_params["kind"]
    if kind not in ("face", "montage"):
        raise HTTPException(404, "no such picture")
    best = st.library.best_faces(pid, MONTAGE_FACES if kind == "montage" else 1)
    if not best:
        raise HTTPException(404, "no such person")
    faces = [(f, st.library.check_inside(f.path)) for f in
             (st.library.face(i) for i in best)]
    try:
        if kind == "montage":
            return _jpeg(st.images.montage(faces), 60)
        return _jpeg(st.images.crop(*faces[0]), 60)
    except NoPicture as e:
        raise HTTPException(404, "no picture") from e


def photo_file(request: Request) -> Response:
    """The original photo of a face, as is (only photos inside the watched folders)."""
    st = _state(request)
    face = st.library.face(request.path_params["fid"])
    real = st.library.check_inside(face.path)
    return FileResponse(real, headers={"cache-control": "private, max-age=3600"},
                        content_disposition_type="inline")


# -- edits --------------------------------------------------------------------------------


async def _edit(request: Request, change: Callable[[FormData, str, WebState],
                Awaitable[tuple[naming.LabelsEdit, str]] | tuple[naming.LabelsEdit, str]],
                default_back: str = "/") -> Response:
    """Run one labels edit from a form; conflicts and impossible edits get a clear page."""
    form = await _form(request)
    st = _state(request)
    digest = _text(form, "digest")
    if not digest:
        raise HTTPException(400, "the form lacks the labels digest: reload the page")
    try:
        edit, done = change(form, digest, st)  # type: ignore[misc]
    except naming.LabelsConflict as e:
        log.info("web_edit_conflict", error=str(e))
        return _render(request, "message.html", {"title": "labels.toml changed",
                       "text": f"{e} The page was showing an older version.",
                       "back": _back(form, default_back)}, status=409)
    except naming.NamingError as e:
        return _render(request, "message.html", {"title": "Not possible", "text": str(e),
                       "back": _back(form, default_back)}, status=400)
    if edit.changed:
        st.edits = [*st.edits, edit][-UNDO_DEPTH:]
        log.info("web_labels_edited", action=done)
    back = _back(form, default_back)
    sep = "&" if "?" in back else "?"
    return RedirectResponse(f"{back}{sep}done={done}", status_code=303)


def _ids(form: FormData) -> list[int]:
    values = form.getlist("person")
    if not values or len(values) > 1000:
        raise HTTPException(400, "choose at least one person")
    return [_int(v if isinstance(v, str) else None, "person") for v in values]


def _do_name(form: FormData, digest: str, st: WebState) -> tuple[naming.LabelsEdit, str]:
    ids = _ids(form)
    name = _text(form, "name") or ""
    edit = naming.name_people(st.cfg.labels_file, ids, name, expected_digest=digest)
    return edit, "merged" if len(ids) > 1 else "named"


def _do_merge(form: FormData, digest: str, st: WebState) -> tuple[naming.LabelsEdit, str]:
    if len(set(form.getlist("person"))) < 2:
        raise naming.NamingError("tick at least two people to merge")
    return _do_name(form, digest, st)


def _do_hide(form: FormData, digest: str, st: WebState) -> tuple[naming.LabelsEdit, str]:
    (pid,) = _ids(form)[:1]
    hidden = _text(form, "hidden") != "0"
    edit = naming.hide_person(st.cfg.labels_file, pid, hidden, expected_digest=digest)
    return edit, "hidden" if hidden else "shown"


def _relative(path: Path, roots: tuple[Path, ...]) -> str:
    """A photo as labels.toml names it: relative to its watched folder."""
    for root in roots:
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
        if rel != os.curdir and not rel.startswith(os.pardir):
            return Path(rel).as_posix()
    return str(path)


def _do_exclude(form: FormData, digest: str, st: WebState) -> tuple[naming.LabelsEdit, str]:
    (pid,) = _ids(form)[:1]
    entries: list[str] = []
    for value in form.getlist("entry"):
        kind, _, fid = (value if isinstance(value, str) else "").partition("-")
        face_id = _int(fid, "entry")
        try:
            face = st.library.face(face_id)
        except NotFound as e:
            raise naming.NamingError(f"no face {face_id}") from e
        if face.person_id != pid:
            raise naming.NamingError(f"face {face_id} is not shown as this person any more")
        if kind == "face":
            entries.append(f"face-{face_id}")
        elif kind == "photo":
            entries.append(_relative(face.path, st.cfg.watch))
        else:
            raise HTTPException(400, "entry: expected face-N or photo-N")
    if not entries:
        raise naming.NamingError("tick at least one face or photo")
    edit = naming.exclude(st.cfg.labels_file, pid, entries, expected_digest=digest)
    return edit, "excluded"


def _do_undo(form: FormData, digest: str, st: WebState) -> tuple[naming.LabelsEdit, str]:
    if not st.edits:
        raise naming.NamingError("nothing to undo")
    edit = naming.undo(st.cfg.labels_file, st.edits[-1])
    st.edits = st.edits[:-1]
    # The undo itself must not land on the undo list.
    return naming.LabelsEdit(edit.path, edit.before, edit.before), "undone"


async def name_action(request: Request) -> Response:
    return await _edit(request, _do_name)


async def merge_action(request: Request) -> Response:
    return await _edit(request, _do_merge)


async def hide_action(request: Request) -> Response:
    return await _edit(request, _do_hide)


async def exclude_action(request: Request) -> Response:
    return await _edit(request, _do_exclude)


async def undo_action(request: Request) -> Response:
    return await _edit(request, _do_undo)


# -- sign-in ------------------------------------------------------------------------------


def signin_page(request: Request) -> Response:
    return _render(request, "signin.html", {"error": None})


async def signin_action(request: Request) -> Response:
    form = await _form(request)
    st = _state(request)
    client = request.client.host if request.client else "?"
    try:
        st.limiter.check(client)
    except TooManyAttempts as e:
        log.warning("web_signin_limited", client=client)
        return _render(request, "signin.html", {"error": str(e)}, status=429)
    stored = read_password_hash(st.cfg.state_dir)
    if not stored or not verify_password(_text(form, "password") or "", stored):
        st.limiter.failed(client)
        log.warning("web_signin_failed", client=client)
        return _render(request, "signin.html", {"error": "wrong password"}, status=403)
    st.limiter.succeeded(client)
    old = _session(request)
    if old is not None:
        st.sessions.drop(old.id)
    response = RedirectResponse("/", status_code=303)
    _set_cookie(request, response, st.sessions.new(signed_in=True))
    return response


async def signout_action(request: Request) -> Response:
    await _form(request)
    session = _session(request)
    if session is not None:
        _state(request).sessions.drop(session.id)
    response = RedirectResponse("/signin" if _state(request).sign_in else "/", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


def _set_cookie(request: Request, response: Response, session: Session) -> None:
    secure = request.url.scheme == "https" or _state(request).cfg.web.behind_https
    response.set_cookie(COOKIE, session.id, max_age=int(_state(request).sessions.ttl),
                        path="/", httponly=True, samesite="strict", secure=secure)


# -- the gate and the app -------------------------------------------------------------

_PUBLIC = ("/signin", "/static/")
_PAGES = ("/", "/person/", "/status", "/signin")


async def _gate(request: Request, call_next: Callable) -> Response:
    """Find the session (a page view starts one: it carries the CSRF token) and, where
    sign-in is required, send anyone not signed in to the sign-in page."""
    st = _state(request)
    session = st.sessions.get(request.cookies.get(COOKIE))
    fresh = None
    path = request.url.path
    page_view = request.method == "GET" and (
        path in _PAGES or (path.startswith("/person/") and path[8:].isdigit())
    )
    if session is None and page_view:
        session = fresh = st.sessions.new()
    request.state.session = session
    if st.sign_in and not (session and session.signed_in) and not path.startswith(_PUBLIC):
        if page_view:
            response: Response = RedirectResponse("/signin", status_code=303)
        else:
            response = Response("sign in first", status_code=403, media_type="text/plain")
    else:
        response = await call_next(request)
    if fresh is not None:
        _set_cookie(request, response, fresh)
    return response


def _error_page(status: int, title: str) -> Callable:
    async def handler(request: Request, exc: Exception) -> Response:
        text = exc.detail if isinstance(exc, HTTPException) else str(exc)
        if status >= 500:
            log.error("web_error", error=text)
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            return _render(request, "message.html", {"title": title, "text": text,
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
    from starlette.middleware import Middleware
    from starlette.middleware.base import BaseHTTPMiddleware

    from daemon.web.auth import PasswordError

    sign_in = not is_loopback(cfg.web.listen)
    if sign_in and read_password_hash(cfg.state_dir) is None:
        raise PasswordError(
            f"web.listen = {cfg.web.listen!r} reaches other machines, so the page needs a "
            "password: run `facecluster web passwd` first"
        )
    routes = [
        Route("/", people_page),
        Route("/person/{pid:int}", person_page),
        Route("/status", status_page),
        Route("/face/{fid:int}.jpg", face_picture),
        Route("/person/{pid:int}/{kind:str}.jpg", person_picture),
        Route("/photo/{fid:int}", photo_file),
        Route("/signin", signin_page),
        Route("/signin", signin_action, methods=["POST"]),
        Route("/signout", signout_action, methods=["POST"]),
        Route("/name", name_action, methods=["POST"]),
        Route("/merge", merge_action, methods=["POST"]),
        Route("/hide", hide_action, methods=["POST"]),
        Route("/exclude", exclude_action, methods=["POST"]),
        Route("/undo", undo_action, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(Guard, loopback_only=not sign_in and is_loopback(cfg.web.listen)),
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

