"""The identity anchors file, ``state_dir/identity.json``: its format, reading and writing.

Identity, part 2 of 3 (its file); the rules are :mod:`daemon.people.anchors`,
the use :mod:`daemon.people.identity`.

It lives beside the store but is not part of it: ``rebuild`` and a deleted or corrupt
database leave it alone, which is what lets a re-derived store give every person-NNNN
and face-N of labels.toml back to the same human (see :mod:`daemon.people.identity`).

Format (version 1)::

    {"version": 1,
     "face_ids_above": 812, "person_ids_above": 57,     # never hand these out again
     "people": {"person-0007": [["<sha256>", x, y, w, h], ...]},
     "faces": {"face-1234": ["<sha256>", x, y, w, h]},
     "photos": {"2019/IMG_0042.jpg": "<sha256>"},       # excluded photos, as written
     "conflicts": [{"kind": "shared-cluster", "people": ["person-0001", "person-0002"],
                    "faces": 23, "message": "..."}]}
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from daemon.fsutil import atomic_write
from daemon.people.labels import LabelsError, parse_face_key, parse_person_key, person_key

log = structlog.get_logger(__name__)

Box = tuple[float, float, float, float]


@dataclass(frozen=True, order=True)
class FaceKey:
    """A face as the photo shows it, independent of store numbering and engine."""

    photo: str
    """SHA-256 of the photo's bytes."""
    box: Box
    """x, y, width, height in pixels of the upright photo at full resolution."""


FILE_NAME = "identity.json"
VERSION = 1
MAX_BYTES = 256 * 1024 * 1024
"""A larger file is refused rather than read into memory."""


class AnchorsError(ValueError):
    """``identity.json`` cannot be read or does not hold anchors; the message says why."""


@dataclass(frozen=True)
class Anchors:
    """Everything the anchors file records."""

    people: dict[int, tuple[FaceKey, ...]] = field(default_factory=dict)
    """Person id -> keys of faces that showed that person."""
    faces: dict[int, FaceKey] = field(default_factory=dict)
    """Face id (as used in ``exclude``) -> the key of that face."""
    photos: dict[str, str] = field(default_factory=dict)
    """Excluded photo entry, as written in labels.toml -> that photo's content hash."""
    face_ids_above: int = 0
    person_ids_above: int = 0
    conflicts: tuple[dict, ...] = ()
    """The last clustering's identity conflicts (see :func:`daemon.people.identity.conflict`)."""


def _key(value: object, where: str) -> FaceKey:
    if not (
        isinstance(value, list)
        and len(value) == 5
        and isinstance(value[0], str)
        and all(isinstance(v, (int, float)) and math.isfinite(v) for v in value[1:])
    ):
        raise AnchorsError(f"{where}: expected [content hash, x, y, w, h], got {value!r}")
    return FaceKey(value[0], tuple(float(v) for v in value[1:]))  # type: ignore[arg-type]


def _count(data: dict, name: str) -> int:
    value = data.get(name, 0)
    if not isinstance(value, int) or value < 0:
        raise AnchorsError(f"{name}: expected a whole number >= 0, got {value!r}")
    return value


def parse(text: str) -> Anchors:
    """Anchors from the file's text; raises :class:`AnchorsError`."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise AnchorsError(f"not JSON: {e}") from e
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise AnchorsError(f"not a version {VERSION} anchors file")
    try:
        people = {}
        for k, keys in dict(data.get("people", {})).items():
            if not isinstance(keys, list):
                raise AnchorsError(f"{k}: expected a list of face keys")
            people[parse_person_key(k)] = tuple(_key(v, k) for v in keys)
        faces = {}
        for k, v in dict(data.get("faces", {})).items():
            face_id = parse_face_key(k)
            if face_id is None:
                raise AnchorsError(f"{k!r} is not a face key like 'face-12'")
            faces[face_id] = _key(v, k)
        photos = dict(data.get("photos", {}))
        conflicts = data.get("conflicts", [])
    except (TypeError, ValueError, LabelsError) as e:
        raise AnchorsError(str(e)) from e
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in photos.items()):
        raise AnchorsError("photos: expected photo entry -> content hash strings")
    if not isinstance(conflicts, list) or not all(isinstance(c, dict) for c in conflicts):
        raise AnchorsError("conflicts: expected a list of objects")
    return Anchors(
        people=people,
        faces=faces,
        photos=photos,
        face_ids_above=_count(data, "face_ids_above"),
        person_ids_above=_count(data, "person_ids_above"),
        conflicts=tuple(conflicts),
    )


def dumps(anchors: Anchors) -> bytes:
    """The file's bytes for ``anchors`` (sorted, so an unchanged state writes the same)."""
    data = {
        "version": VERSION,
        "face_ids_above": anchors.face_ids_above,
        "person_ids_above": anchors.person_ids_above,
        "people": {
            person_key(p): [[k.photo, *k.box] for k in sorted(keys)]
            for p, keys in sorted(anchors.people.items())
        },
        "faces": {f"face-{f}": [k.photo, *k.box] for f, k in sorted(anchors.faces.items())},
        "photos": dict(sorted(anchors.photos.items())),
        "conflicts": list(anchors.conflicts),
    }
    return (json.dumps(data, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


def read(path: Path) -> Anchors:
    """The anchors in ``path``; empty when it does not exist. Raises AnchorsError."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return Anchors()
    except OSError as e:
        raise AnchorsError(f"cannot read {path}: {e.strerror or e}") from e
    if len(data) > MAX_BYTES:
        raise AnchorsError(f"{path} is larger than {MAX_BYTES // (1024 * 1024)} MiB")
    try:
        return parse(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise AnchorsError(f"{path}: not UTF-8 text") from e
    except AnchorsError as e:
        raise AnchorsError(f"{path}: {e}") from e


def write(path: Path, anchors: Anchors) -> None:
    """Replace ``path`` with ``anchors`` atomically (and durably: it outlives the store)."""
    atomic_write(path, dumps(anchors))
