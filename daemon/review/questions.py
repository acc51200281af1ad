"""Which "are these two the same person?" questions to ask, best first.

A question has two sides, each a person (shown by a few of their faces) or one face.
Three kinds are worth a person's time, each with an expected gain in faces put right:

- *fragments*: two people whose centres are close may be one human cut in two; a "yes"
  puts the smaller part with the larger, so the gain is the chance they are one times
  the smaller part, and more for parts of a big person (their album is the one looked
  at most);
- *edge faces*: a face far from its person's centre may be someone else; a "no" takes
  it out (the gain grows with the album it would spoil);
- *strays*: a face nobody was given, close to a person; a "yes" gives it to them.

Nothing the answers already settle is asked (:class:`daemon.cluster.Closure`), and a
question answered "not sure" comes back only when new photos gave either side more faces.

Question ids are the two sides' references, ``person-0007+person-0012`` or
``person-0007+face-88`` (people first, then by number): the same question keeps its id
whatever else changes, so an answer can be given later or by a script.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from daemon.cluster.links import Closure
from daemon.cluster.neighbours import as_unit_float32, build_index, search
from daemon.people.labels import ref_key
from daemon.review.ids import question_id, ref_order

SHOWN = 6
"""Faces shown per side at most."""
NEAR = 0.55
"""People whose centres lie farther apart are not worth asking about (L2, unit vectors)."""
SAME_AT = 0.30
"""Centre distance at which two parts are taken for one person for sure..."""
APART_AT = 0.55
"""...and at which for strangers: the chance in between falls linearly."""
EDGE_FROM = 0.40
"""A face this far from its person's centre starts to be doubtful..."""
EDGE_SURE = 0.60
"""...and this far, it is surely someone else."""
LOOKALIKES = 5
"""Nearest other people considered per person."""

Kind = Literal["fragment", "edge", "stray"]
Order = Literal["gain", "naive"]


@dataclass(frozen=True)
class Side:
    """One side of a question: a person (``person`` set) or a single face."""

    ref: str
    """``person-0007`` or ``face-88``."""
    person: int | None
    faces: tuple[int, ...]
    """Face ids to show, at most :data:`SHOWN`."""
    size: int
    """Faces the side stands for (the person's, or 1)."""


@dataclass(frozen=True)
class Question:
    """"Are ``a`` and ``b`` the same person?"."""

    id: str
    a: Side
    b: Side
    kind: Kind
    gain: float
    """Expected faces put right by an answer."""
    distance: float


@dataclass(frozen=True)
class Library:
    """The faces to ask about: one row per face (person -1 = nobody)."""

    face_ids: np.ndarray
    vectors: np.ndarray
    persons: np.ndarray


@dataclass(frozen=True)
class _People:
    ids: np.ndarray
    centres: np.ndarray
    sizes: np.ndarray
    rows: dict[int, np.ndarray]
    """Person -> its rows, nearest its centre first."""


def _people(lib: Library) -> _People:
    has = np.flatnonzero(lib.persons >= 0)
    ids, member = np.unique(lib.persons[has], return_inverse=True)
    v = as_unit_float32(lib.vectors)
    sums = np.zeros((len(ids), v.shape[1]), np.float64)
    np.add.at(sums, member, v[has])
    centres = (sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12))
    centres = centres.astype(np.float32)
    dist = np.linalg.norm(v[has] - centres[member], axis=1)
    rows: dict[int, np.ndarray] = {}
    order = np.lexsort((dist, member))
    bounds = np.flatnonzero(np.diff(member[order])) + 1
    for chunk in np.split(order, bounds) if len(order) else []:
        rows[int(ids[member[chunk[0]]])] = has[chunk]
    return _People(ids, centres, np.bincount(member, minlength=len(ids)), rows)


def _chance_same(d: float) -> float:
    return float(np.clip((APART_AT - d) / (APART_AT - SAME_AT), 0.0, 1.0))


def _person_side(lib: Library, people: _People, p: int) -> Side:
    rows = people.rows[p]
    return Side(ref_key("person", p), p, tuple(int(f) for f in lib.face_ids[rows[:SHOWN]]),
                len(rows))


def _face_side(lib: Library, row: int) -> Side:
    f = int(lib.face_ids[row])
    return Side(ref_key("face", f), None, (f,), 1)


def _question(a: Side, b: Side, kind: Kind, gain: float, d: float) -> Question:
    if ref_order(b.ref) < ref_order(a.ref):
        a, b = b, a
    return Question(question_id(a.ref, b.ref), a, b, kind, round(gain, 4), round(d, 4))


def _fragments(lib: Library, people: _People, k: int = LOOKALIKES) -> list[Question]:
    if len(people.ids) < 2:
        return []
    dist, idx = search(build_index(people.centres), people.centres,
                       min(k + 1, len(people.ids)))
    out = []
    for i, p in enumerate(people.ids.tolist()):
        for d, j in zip(dist[i], idx[i], strict=True):
            if j < 0 or j == i or d > NEAR:
                continue  # a pair found from both sides is one question (same id)
            q = int(people.ids[j])
            small, big = sorted((int(people.sizes[i]), int(people.sizes[j])))
            gain = _chance_same(float(d)) * small * (1 + math.log2(big) / 4)
            out.append(_question(_person_side(lib, people, p), _person_side(lib, people, q),
                                 "fragment", gain, float(d)))
    return out


def _edges(lib: Library, people: _People) -> list[Question]:
    v = as_unit_float32(lib.vectors)
    out = []
    for k, p in enumerate(people.ids.tolist()):
        rows = people.rows[p]
        if len(rows) < 3:
            continue
        far = rows[::-1][: max(1, len(rows) // 10)]  # the farthest tenth at most
        d = np.linalg.norm(v[far] - people.centres[k], axis=1)
        chance = np.clip((d - EDGE_FROM) / (EDGE_SURE - EDGE_FROM), 0.0, 1.0)
        for row, c, dd in zip(far.tolist(), chance.tolist(), d.tolist(), strict=True):
            if c > 0:
                gain = c * (1 + math.log2(len(rows)))
                out.append(_question(_person_side(lib, people, p), _face_side(lib, row),
                                     "edge", gain, dd))
    return out


def _strays(lib: Library, people: _People) -> list[Question]:
    rows = np.flatnonzero(lib.persons < 0)
    if len(rows) == 0 or len(people.ids) == 0:
        return []
    dist, idx = search(build_index(people.centres), as_unit_float32(lib.vectors[rows]), 1)
    out = []
    for row, d, j in zip(rows.tolist(), dist[:, 0].tolist(), idx[:, 0].tolist(), strict=True):
        if j >= 0 and d <= NEAR and (c := _chance_same(d)) > 0:
            out.append(_question(_person_side(lib, people, int(people.ids[j])),
                                 _face_side(lib, row), "stray", c, d))
    return out


def _naive(lib: Library, people: _People) -> list[Question]:
    """The look-alike lists top to bottom (``people --json``'s), person by person: the
    order a user without this ranking would follow."""
    from daemon.cluster.similar import nearest_people

    near = nearest_people(lib.persons, lib.vectors)
    out: list[Question] = []
    for p in sorted(near):
        for other in near[p]:
            out.append(_question(_person_side(lib, people, p),
                                 _person_side(lib, people, other.person_id),
                                 "fragment", 0.0, other.distance))
    return out


def rank_questions(lib: Library, answers: Closure, skip: Mapping[str, int] | None = None,
                   order: Order = "gain") -> list[Question]:
    """Every question worth asking, best first (see the module docstring).

    ``skip`` maps ids answered "not sure" to the faces both sides had then: such a
    question is left out until its sides have more faces.
    """
    people = _people(lib)
    if order == "naive":
        found = _naive(lib, people)
    else:
        found = _fragments(lib, people) + _edges(lib, people) + _strays(lib, people)
        found.sort(key=lambda q: (-q.gain, q.distance, q.id))
    skip = skip or {}
    seen: set[str] = set()
    out = []
    for q in found:
        if q.id in seen or answers.settled(q.a.ref, q.b.ref):
            continue
        if q.id in skip and q.a.size + q.b.size <= skip[q.id]:
            continue
        seen.add(q.id)
        out.append(q)
    return out


def unsettled(questions: Sequence[Question], answers: Closure) -> list[Question]:
    """The questions the answers (given since they were chosen) leave open."""
    return [q for q in questions if not answers.settled(q.a.ref, q.b.ref)]
