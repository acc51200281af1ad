"""The pictures: a face's crop, a person's face or montage, and a face's original photo.

Faces are drawn from the crop store when it has them, else from their photos.

Addressed by face or person id only, never by a path from the request; only photos
inside the watched folders are read (:meth:`Library.check_inside`). Plain functions, run
in the thread pool like the pages.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from daemon.store import FaceRecord
from daemon.web.images import NoPicture
from daemon.web.library import NotFound
from daemon.web.state import WebState, labels_of, web_state

MONTAGE_FACES = 9
FACE_MAX_AGE = 86400
"""Seconds a browser keeps a face crop: it never changes (face ids are not reused)."""
PERSON_MAX_AGE = 60
"""Seconds a browser keeps a person's pictures: their best faces change as faces arrive."""
_SHOWN = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"),
          (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"), (b"BM", "image/bmp"))
"""Formats every browser shows, by their first bytes (WebP is checked apart)."""


def _jpeg(data: bytes, max_age: int) -> Response:
    return Response(data, media_type="image/jpeg",
                    headers={"cache-control": f"private, max-age={max_age}"})


def _stored_crop(st: WebState, face_id: int) -> Callable[[], bytes | None]:
    """Reads the face's crop from the store, when the picture cache misses."""
    return lambda: st.library.store.face_crops([face_id]).get(face_id)


def face_picture(request: Request) -> Response:
    """One face, cropped from its photo."""
    st = web_state(request)
    face = st.library.face(request.path_params["fid"])
    real = st.library.check_inside(face.path)
    try:
        return _jpeg(st.images.crop(face, real, _stored_crop(st, face.id)), FACE_MAX_AGE)
    except NoPicture as e:
        raise HTTPException(404, "no picture") from e


def _drawable(st: WebState, face_ids: list[int]) -> list[tuple[FaceRecord, str]]:
    """These faces with their photos' real paths, leaving out any whose photo is gone or
    now lies outside the watched folders (a symlink out): one such face must not cost
    the person their picture."""
    out = []
    for fid in face_ids:
        try:
            face = st.library.face(fid)
            out.append((face, st.library.check_inside(face.path)))
        except NotFound:
            continue
    return out


def person_picture(request: Request) -> Response:
    """A person's best face (``face``) or a grid of their best faces (``montage``)."""
    st = web_state(request)
    pid, kind = request.path_params["pid"], request.path_params["kind"]
    if kind not in ("face", "montage"):
        raise HTTPException(404, "no such picture")
    _, lab = labels_of(request)
    faces = _drawable(st, st.library.best_faces(pid, lab, MONTAGE_FACES))
    if not faces:
        raise HTTPException(404, "no such person")
    try:
        if kind == "montage":
            ids = [f.id for f, _ in faces]
            return _jpeg(st.images.montage(faces, lambda: st.library.store.face_crops(ids)),
                         PERSON_MAX_AGE)
        face, real = faces[0]
        return _jpeg(st.images.crop(face, real, _stored_crop(st, face.id)), PERSON_MAX_AGE)
    except NoPicture as e:
        raise HTTPException(404, "no picture") from e


def _browser_type(head: bytes) -> str | None:
    """The media type of a file starting with ``head``, if every browser shows it."""
    for magic, media in _SHOWN:
        if head.startswith(magic):
            return media
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def photo_file(request: Request) -> Response:
    """The original photo of a face (only photos inside the watched folders): as is when
    a browser shows its format, else (HEIC, AVIF, TIFF, RAW) a JPEG of it."""
    st = web_state(request)
    face = st.library.face(request.path_params["fid"])
    real = st.library.check_inside(face.path)
    headers = {"cache-control": "private, max-age=3600"}
    try:
        with open(real, "rb") as f:
            media = _browser_type(f.read(16))  # by content: an extension may lie
    except OSError as e:
        raise HTTPException(404, "no photo") from e
    if media is not None:
        return FileResponse(real, media_type=media, headers=headers,
                            content_disposition_type="inline")
    try:
        return Response(st.images.rendition(real), media_type="image/jpeg", headers=headers)
    except NoPicture as e:
        raise HTTPException(404, "no picture") from e
