"""People + labels -> what each album folder should hold.

Pure functions, no disk access: :func:`plan_albums` turns the clustering result (which
photos and faces belong to which person id) and the user's labels into one
:class:`AlbumPlan` per album folder.

Folder names. An unnamed person's album is ``person-0007``; a named person's is
:func:`~daemon.people.labels.safe_folder_name` of the name; people with the same name share one
album. When two albums would get the same folder (two names that sanitise alike, names
differing only in case - Windows, macOS and SMB compare case-insensitively - or a name
that equals another person's ``person-NNNN``), the folder is claimed in this order:
``No faces``, then unnamed people (their key is their identity), then named albums by
their lowest person id. A later claimant gets `` (person-NNNN)`` appended, with its
lowest person id, so the outcome does not depend on input order.
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from pathlib import Path

from daemon.config import NoFacePolicy
from daemon.people.labels import (
    MAX_FOLDER_BYTES,
    Labels,
    PersonLabel,
    excludes_face,
    excludes_photo,
    looks_like_person_key,
    person_key,
    safe_folder_name,
    truncate_utf8,
)

NO_FACES_FOLDER = "No faces"


@dataclass(frozen=True)
class FaceRef:
    """One face as the pictures need it: where it is and how good it is."""

    face_id: int
    path: Path
    box: tuple[float, float, float, float]
    """x, y, width, height in pixels of the upright full-resolution photo."""
    score: float
    """Detector confidence, 0..1."""
    landmarks: tuple[tuple[float, float], ...] = ()
    """Optional five points (right eye, left eye, nose, mouth corners), for frontalness."""


@dataclass(frozen=True)
class AlbumPlan:
    """What one album folder should hold."""

    folder: str
    """The folder's name inside the albums dir: a single safe path component."""
    person_ids: tuple[int, ...]
    """The people shown (sorted); empty for the ``No faces`` album."""
    photos: tuple[Path, ...]
    """Absolute paths of the originals, sorted."""
    faces: tuple[FaceRef, ...]
    """The album's faces, for the thumbnail and montage."""


def _fold(folder: str) -> str:
    """How a case-insensitive file system compares two folder names."""
    return unicodedata.normalize("NFC", folder).casefold()


def _claim(wanted: str, suffix_id: int, taken: set[str]) -> str:
    """``wanted`` if free, else ``wanted (person-NNNN)`` (made to fit 255 bytes)."""
    folder = wanted
    n = 1
    while _fold(folder) in taken:
        tag = f" ({person_key(suffix_id)})" if n == 1 else f" ({person_key(suffix_id)}, {n})"
        head = truncate_utf8(wanted, MAX_FOLDER_BYTES - len(tag.encode())).rstrip(". ")
        folder = safe_folder_name(f"{head}{tag}")
        n += 1
    taken.add(_fold(folder))
    return folder


def _person_content(
    label: PersonLabel,
    photos: Set[Path],
    faces: Sequence[FaceRef],
    watch_roots: Sequence[Path],
) -> tuple[set[Path], list[FaceRef]]:
    """One person's photos and faces minus what the user excluded."""
    kept_faces: list[FaceRef] = []
    dropped_photos: set[Path] = set()
    if label.exclude:
        dropped_photos = {p for p in photos if excludes_photo(label, p, watch_roots)}
        # A photo whose only faces of this person were all rejected is not theirs either.
        faces_in: dict[Path, list[bool]] = defaultdict(list)
        for f in faces:
            faces_in[f.path].append(excludes_face(label, f.face_id))
        dropped_photos |= {p for p, flags in faces_in.items() if all(flags)}
        for f in faces:
            if f.path not in dropped_photos and not excludes_face(label, f.face_id):
                kept_faces.append(f)
    else:
        kept_faces = list(faces)
    kept = set(photos) - dropped_photos
    return kept, [f for f in kept_faces if f.path in kept]


def plan_albums(
    person_photos: Mapping[int, Set[Path]],
    person_faces: Mapping[int, Sequence[FaceRef]],
    labels: Labels,
    no_face_photos: Set[Path],
    no_face: NoFacePolicy,
    watch_roots: Iterable[Path],
) -> list[AlbumPlan]:
    """The albums for these people, sorted by folder name.

    Hidden people get no album; excluded photos and faces leave that person's album;
    people sharing a name share an album; an album left with no photo is not planned.
    ``no_face`` decides where photos without a face go: ``skip`` nowhere, ``album`` one
    ``No faces`` folder, ``all`` every person's album.
    """
    if no_face not in ("skip", "album", "all"):
        raise ValueError(f"no_face must be 'skip', 'album' or 'all', got {no_face!r}")
    roots = tuple(watch_roots)
    # group key -> (person ids, photos, faces); a name groups, an unnamed id stands alone
    groups: dict[tuple[str, str | int], tuple[list[int], set[Path], list[FaceRef]]] = {}
    for pid in sorted(set(person_photos) | set(person_faces)):
        label = labels.label(pid)
        if label.hidden:
            continue
        photos, faces = _person_content(
            label, person_photos.get(pid, frozenset()), person_faces.get(pid, ()), roots
        )
        if not photos:
            continue
        key: tuple[str, str | int] = ("name", label.name) if label.name else ("id", pid)
        ids, group_photos, group_faces = groups.setdefault(key, ([], set(), []))
        ids.append(pid)
        group_photos |= photos
        group_faces.extend(faces)

    taken: set[str] = set()
    plans: list[AlbumPlan] = []
    if no_face == "album" and no_face_photos:
        folder = _claim(NO_FACES_FOLDER, 0, taken)
        plans.append(AlbumPlan(folder, (), tuple(sorted(no_face_photos)), ()))
    extra = set(no_face_photos) if no_face == "all" else set()
    # unnamed first (their folder is their key), then named by lowest person id
    order = sorted(groups.items(), key=lambda kv: (kv[0][0] == "name", min(kv[1][0])))
    for (kind, value), (ids, photos, faces) in order:
        wanted = person_key(int(value)) if kind == "id" else safe_folder_name(str(value))
        if kind == "name" and looks_like_person_key(wanted):
            # A hand-written name like "person-0004." would take person 4's folder
            # (now, or once they have photos again): it always gets its own tag.
            taken.add(_fold(wanted))
        folder = _claim(wanted, min(ids), taken)
        faces.sort(key=lambda f: f.face_id)
        plans.append(
            AlbumPlan(folder, tuple(sorted(ids)), tuple(sorted(photos | extra)), tuple(faces))
        )
    plans.sort(key=lambda p: p.folder)
    return plans
