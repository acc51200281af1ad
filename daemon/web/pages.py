"""The reading pages: people, one person, and the service's status.

Plain functions, not coroutines: Starlette runs them in its thread pool, so a slow query
on a big library never holds up the event loop (and the pictures behind it).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from daemon.service.status import read_service_status
from daemon.web.forms import number
from daemon.web.library import paginate
from daemon.web.render import render
from daemon.web.state import labels_of, web_state

PEOPLE_PER_PAGE = 48
FACES_PER_PAGE = 60


def people_page(request: Request) -> Response:
    """Everyone, largest first, a page at a time; how many are still unnamed."""
    st = web_state(request)
    _, lab = labels_of(request)
    people = st.library.people(lab)
    page = paginate(people, number(request.query_params.get("page"), "page", 1),
                    PEOPLE_PER_PAGE)
    unnamed = sum(1 for p in people if not p.name and not p.hidden)
    return render(request, "people.html", {"page": page, "unnamed": unnamed})


def person_page(request: Request) -> Response:
    """One person's faces (all of merged people's), a page at a time, and who may be the
    same; another member's address leads to the merged page."""
    st = web_state(request)
    pid = request.path_params["pid"]
    _, lab = labels_of(request)
    person = st.library.person(pid, lab)
    if person.id != pid:
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(f"/person/{person.id}{query}", status_code=303)
    pages = max(1, -(-person.stored // FACES_PER_PAGE))
    page = min(max(1, number(request.query_params.get("page"), "page", 1)), pages)
    faces = st.library.shown_faces(person, (page - 1) * FACES_PER_PAGE, FACES_PER_PAGE)
    return render(request, "person.html", {
        "person": person, "faces": faces, "number": page, "pages": pages,
        "similar": st.library.similar_people(person, lab), "label": lab.labels.label(pid),
    })


def status_page(request: Request) -> Response:
    """The service's phase and queue, the library's counts, and the photos that failed."""
    st = web_state(request)
    return render(request, "status.html", {
        "service": read_service_status(st.cfg.state_dir), "counts": st.library.counts(),
        "failed": st.library.failed(), "labels_file": st.cfg.labels_file,
    })
