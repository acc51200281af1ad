"""The pictures: a face's crop, a person's face or montage, and a face's original photo.

Addressed by face or person id only, never by a path from the request; only photos
inside the watched folders are read (:meth:`Library.check_inside`). Plain functions, run
in the thread pool like the pages.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from daemon.web.images import NoPicture
from daemon.web.state import labels_of, web_state

MONTAGE_FACES = 9
FACE_MAX_AGE = 86400
"""Seconds a browser keeps a face crop: it never changes (face ids are not reused)."""
PERSON_MAX_AGE = 60
"""Seconds a browser keeps a person's pictures: their best faces change as faces arrive."""


def _jpeg(data: bytes, max_age: int) -> Response:
    return Response(data, media_type="image/jpeg",
                    headers={"cache-control": f"private, max-age={max_age}"})


def face_picture(request: Request) -> Response:
    """One face, cropped from its photo."""
    st = web_state(request)
    face = st.library.face(request.path_params["fid"])
    try:
        return _jpeg(st.images.crop(face, st.library.check_inside(face.path)), FACE_MAX_AGE)
    except NoPicture as e:
        raise HTTPException(404, "no picture") from e


def person_picture(request: Request) -> Response:
    """A person's best face (``face``) or a grid of their best faces (``montage``)."""
    st = web_state(request)
    pid, kind = request.path_params["pid"], request.path_params["kind"]
    if kind not in ("face", "montage"):
        raise HTTPException(404, "no such picture")
    _, lab = labels_of(request)
    best = st.library.best_faces(pid, lab, MONTAGE_FACES if kind == "montage" else 1)
    if not best:
        raise HTTPException(404, "no such person")
    faces = [(f, st.library.check_inside(f.path)) for f in
             (st.library.face(i) for i in best)]
    try:
        if kind == "montage":
            return _jpeg(st.images.montage(faces), PERSON_MAX_AGE)
        return _jpeg(st.images.crop(*faces[0]), PERSON_MAX_AGE)
    except NoPicture as e:
        raise HTTPException(404, "no picture") from e


def photo_file(request: Request) -> Response:
    """The original photo of a face, as is (only photos inside the watched folders)."""
    st = web_state(request)
    face = st.library.face(request.path_params["fid"])
    real = st.library.check_inside(face.path)
    return FileResponse(real, headers={"cache-control": "private, max-age=3600"},
                        content_disposition_type="inline")
