"""The Review page: one "same person?" question at a time, with large faces.

The questions are the ones ``facecluster review`` asks (:mod:`daemon.review`), best
first; an answer goes into labels.toml through :func:`daemon.review.record.record_answer`
(so through :mod:`daemon.people.naming`, with the digest of the file the page was drawn from),
and "not sure" into ``state/review.json``. Keys y / n / s answer and q leaves, as on the
terminal (``static/app.js``: no inline script).
"""

from __future__ import annotations

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from daemon.people import labels, naming
from daemon.review.record import ANSWERS, read_unsure, record_answer
from daemon.web.actions import _edit
from daemon.web.forms import number, text
from daemon.web.render import render
from daemon.web.state import WebState, labels_of, web_state


def _questions(st: WebState, lab) -> list:  # noqa: ANN001 - a LabelsState
    from daemon.review import session  # the clustering code, on first use only

    store = st.library.store
    engine = store.get_meta("engine")
    if engine is None:
        return []
    unsure = sorted(read_unsure(st.cfg.state_dir).items())
    return st.library._cached(  # noqa: SLF001 - the library's per-version cache
        f"review:{lab.digest}:{unsure}",
        lambda: session.questions(store, engine, lab.labels, st.cfg.state_dir,
                                  st.cfg.clustering))


def review_page(request: Request) -> Response:
    """The best open question, or a note that there is none."""
    st = web_state(request)
    _, lab = labels_of(request)
    questions = _questions(st, lab)
    question = questions[0] if questions else None
    sides = []
    if question is not None:
        for side in (question.a, question.b):
            name = lab.labels.label(side.person).name if side.person is not None else None
            sides.append({"ref": side.ref, "person": side.person, "name": name,
                          "faces": side.faces, "size": side.size})
    return render(request, "review.html", {"question": question, "sides": sides,
                                           "left": len(questions)})


def _answer(form: FormData, digest: str, st: WebState) -> tuple[naming.LabelsEdit, str]:
    qid, answer = text(form, "question") or "", text(form, "answer") or ""
    if answer not in ANSWERS:
        raise HTTPException(400, "answer: expected yes, no or unsure")
    current = labels.load_labels(st.cfg.labels_file)
    try:
        edit = record_answer(st.cfg.labels_file, st.cfg.state_dir, current, qid, answer,
                             st.library.store, expected_digest=digest)
    except labels.LabelsError as e:
        raise naming.NamingError(str(e)) from e
    if edit is None:  # "not sure": labels.toml unchanged
        text_now = st.cfg.labels_file.read_text("utf-8") if st.cfg.labels_file.exists() else ""
        edit = naming.LabelsEdit(st.cfg.labels_file, text_now, text_now)
    return edit, "answered"


async def answer_action(request: Request) -> Response:
    """Record the answer to one question, then show the next."""
    return await _edit(request, _answer, default_back="/review")


def _split_parts(st: WebState, pid: int) -> list:
    from daemon.review.split import person_parts

    engine = st.library.store.get_meta("engine")
    if engine is None:
        return []
    return st.library._cached(  # noqa: SLF001 - the library's per-version cache
        f"split:{pid}", lambda: person_parts(st.library.store, engine, pid, st.cfg.clustering)[1])


def split_page(request: Request) -> Response:
    """A person's faces re-clustered stricter: each part after the first is a question."""
    st = web_state(request)
    pid = request.path_params["pid"]
    _, lab = labels_of(request)
    person = st.library.person(pid, lab)
    return render(request, "split.html", {"person": person,
                                          "parts": _split_parts(st, pid)})


def _split_answer(form: FormData, digest: str, st: WebState) -> tuple[naming.LabelsEdit, str]:
    pid = number(text(form, "person"), "person")
    answer = text(form, "answer")
    if answer not in ("yes", "no"):
        raise HTTPException(400, "answer: expected yes or no")
    parts = _split_parts(st, pid)
    first = number(text(form, "first"), "first")
    part = next((p for p in parts[1:] if p.faces[0] == first), None)
    if part is None:
        raise naming.NamingError("the person changed since the page was drawn: look again")
    edit = naming.answer(st.cfg.labels_file, pid, [f"face-{f}" for f in part.faces],
                         same=answer == "yes", expected_digest=digest)
    return edit, "answered"


async def split_action(request: Request) -> Response:
    """Answer whether one part of a split person is that person."""
    return await _edit(request, _split_answer)
