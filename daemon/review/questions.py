"""Which "are these two the same person?" questions to ask, best first.

A question has two sides, each a person (shown by a few of their faces) or one face.
Four kinds are worth a person's time, each with an expected gain in faces put right:

- *fragments*: two people whose centres are close may be one human cut in two; a "yes"
  joins them: the gain is the chance they are one times the pairs of faces it puts
  together (``size_a * size_b``), so the fragments of big people come first;
- *edge faces*: a face closer to another person than to the other faces of its own may
  be someone else; a "no" takes it out: the chance times the wrong pairs it removes
  (``size - 1``);
- *strays*: a face nobody was given, close to a person; a "yes" gives it to them: the
  chance times the pairs it adds (``size``);
- *parts*: a sub-group of a person (a part of a stricter re-clustering of the person's
  faces alone, :mod:`daemon.review.split`: often another member of the family) against
  the rest of that person; a "no" moves the whole sub-group out: the chance times the
  wrong pairs it removes (``part size * rest size``).

The chances are piecewise-linear in the distance, measured with the oracle of
``bench/review.py`` on Families In the Wild train (YuNet + dlib; bench/CLUSTERING.md):
relatives are close there, so two close people are rarely one (under one in ten), while
a stray face close to a person is that person about four times in ten, and a face as
close to another person's faces as to its own person's is someone else four times in ten.

Nothing the answers already settle is asked (:class:`daemon.cluster.Closure`), nor what
a photo settles (two people with faces in one photo are two; a face is not the person
who has another face in its photo), and a question answered "not sure" comes back only
when new photos gave either side more faces.

Question ids are the two sides' references, ``person-0007+person-0012``,
``person-0007+face-88`` or ``person-0007+part-88`` (:mod:`daemon.review.ids`): the
same question keeps its id whatever else changes, so an answer can be given later or by
a script.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from daemon.cluster.dbscan import ClusterParams
from daemon.cluster.links import Closure
from daemon.cluster.neighbours import as_unit_float32, build_index, search
from daemon.people.labels import ref_key
from daemon.review.ids import SHOWN, part_key, question_id, ref_order
from daemon.review.learn import Observed
from daemon.review.split import split_faces, stricter

NEAR = 0.50
"""People (or a stray face and a person) farther apart are not worth asking about."""
FRAGMENT_CHANCE = ((0.20, 0.12), (0.25, 0.08), (0.30, 0.06), (0.35, 0.02), (0.45, 0.0))
"""(centre distance, chance that two people are one), measured (module docstring)."""
STRAY_CHANCE = ((0.20, 0.6), (0.30, 0.44), (0.35, 0.29), (0.40, 0.11), (0.45, 0.0))
"""(distance to a person's centre, chance that a face nobody was given is them)."""
EDGE_CHANCE = ((-0.08, 0.0), (-0.06, 0.04), (-0.04, 0.16), (-0.02, 0.29), (0.0, 0.42),
               (0.02, 0.51), (0.04, 0.75))
"""(how much closer, in root mean square distance, a face is to the faces of the nearest
other person than to the other faces of its own, chance that it is not its person)."""
PART_CHANCE = ((0.15, 0.08), (0.225, 0.13), (0.30, 0.10))
"""(distance between the centres of a sub-group and of the rest of its person, chance
that the sub-group is someone else), measured on the 76 parts of the FIW store of
bench/CLUSTERING.md (8% at 0.15-0.20, 13% at 0.20-0.25). Beyond 0.25 none of 11 was
someone else, too few to rule such parts out: the table holds 0.10 there (``np.interp``
keeps the last value), a guess, not a measurement."""
PART_MIN = 8
"""People with fewer faces are not re-clustered for parts."""
PART_PEOPLE = 500
"""The largest people re-clustered for parts, at most (a bounded cost per listing)."""
AFTER_NO = 0.015
"""Added to a face's margin when its person and the nearest other person were answered
"no": measured with the oracle after 100 answers on FIW (60 such faces: at margins
-0.04 to 0 they were someone else 31-80% of the time, the others 21-42%)."""
LOOKALIKES = 5
"""Nearest other people considered per person."""
EDGES = 0.3
"""Share of a person's faces, farthest from its centre first, considered as edge faces."""

Kind = Literal["fragment", "edge", "stray", "part"]
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
    """Faces the side stands for (the person's, the part's, or 1)."""
    members: tuple[int, ...] = ()
    """A part's face ids, all of them (what an answer about it moves)."""


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
    photos: np.ndarray | None = None
    """Photo id per face: faces of one photo are different people."""


@dataclass(frozen=True)
class _People:
    ids: np.ndarray
    centres: np.ndarray
    """Unit centres (the normalised mean of each person's faces)."""
    means: np.ndarray
    """The plain means: ``2 - 2 f . mean`` is a face's mean square distance to them."""
    sizes: np.ndarray
    rows: dict[int, np.ndarray]
    """Person -> its rows, nearest its centre first."""


def _people(lib: Library, block: int = 65536) -> _People:
    """Each person's centre and rows; read in blocks (no copy of a million vectors)."""
    from scipy import sparse

    has = np.flatnonzero(lib.persons >= 0)
    ids, member = np.unique(lib.persons[has], return_inverse=True)
    v = lib.vectors
    members = sparse.csr_matrix((np.ones(len(has), np.float32), (member, has)),
                                shape=(len(ids), len(v)))
    sums = np.asarray(members @ v, dtype=np.float64)
    centres = (sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12))
    centres = centres.astype(np.float32)
    dist = np.empty(len(has), np.float32)
    for start in range(0, len(has), block):
        rows, who = has[start:start + block], member[start:start + block]
        cos = np.einsum("ij,ij->i", as_unit_float32(v[rows]), centres[who])
        dist[start:start + len(rows)] = np.sqrt(np.clip(2 - 2 * cos, 0, None))
    rows: dict[int, np.ndarray] = {}
    order = np.lexsort((dist, member))
    bounds = np.flatnonzero(np.diff(member[order])) + 1
    for chunk in np.split(order, bounds) if len(order) else []:
        rows[int(ids[member[chunk[0]]])] = has[chunk]
    sizes = np.bincount(member, minlength=len(ids))
    means = (sums / np.maximum(sizes, 1)[:, None]).astype(np.float32)
    return _People(ids, centres, means, sizes, rows)


def _chance(table: tuple[tuple[float, float], ...], d: float) -> float:
    xs, ys = zip(*table, strict=True)
    return float(np.interp(d, xs, ys))


def _shown_in(lib: Library) -> dict[int, set[int]]:
    """Person -> the photos they have a face in (empty without photo ids)."""
    out: dict[int, set[int]] = {}
    if lib.photos is None:
        return out
    for p, ph in zip(lib.persons.tolist(), np.asarray(lib.photos).tolist(), strict=True):
        if p >= 0 and ph >= 0:
            out.setdefault(p, set()).add(ph)
    return out


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


def _fragments(lib: Library, people: _People, shown: dict[int, set[int]],
               scale: float = 1.0, k: int = LOOKALIKES) -> list[Question]:
    """Close people; ``scale``: what this library's answers make of the measured chance
    (:mod:`daemon.review.learn`)."""
    if len(people.ids) < 2:
        return []
    dist, idx = search(build_index(people.centres), people.centres,
                       min(k + 1, len(people.ids)))
    out = []
    for i, p in enumerate(people.ids.tolist()):
        for d, j in zip(dist[i], idx[i], strict=True):
            q = int(people.ids[j]) if j >= 0 else -1
            if j < 0 or j == i or d > NEAR or shown.get(p, set()) & shown.get(q, set()):
                continue  # (a pair found from both sides is one question: same id)
            gain = scale * _chance(FRAGMENT_CHANCE, float(d)) * int(people.sizes[i]) * int(
                people.sizes[j])
            out.append(_question(_person_side(lib, people, p), _person_side(lib, people, q),
                                 "fragment", gain, float(d)))
    return out


def _edges(lib: Library, people: _People, answers: Closure) -> list[Question]:
    """Faces that sit closer to another person than to the rest of their own: the root
    mean square distance to the person's other faces (``2 - 2 f . mean(others)`` on unit
    vectors: no n x n matrix) minus that to the faces of the nearest other person."""
    v = as_unit_float32(lib.vectors)
    cand, own, owner = [], [], []
    for p in people.ids.tolist():
        rows = people.rows[p]
        n = len(rows)
        if n < 3:
            continue
        far = rows[::-1][: max(1, int(np.ceil(n * EDGES)))]  # farthest from the centre
        others = (v[rows].sum(axis=0, dtype=np.float64) - v[far]) / (n - 1)
        own.append(np.sqrt(np.clip(2 - 2 * np.einsum("ij,ij->i", v[far], others), 0, None)))
        cand.append(far)
        owner += [p] * len(far)
    if not cand or len(people.ids) < 2:
        return []
    rows, own_d = np.concatenate(cand), np.concatenate(own)
    _, idx = search(build_index(people.centres), v[rows], 2)
    mine = np.searchsorted(people.ids, np.array(owner))
    near = np.where(idx[:, 0] == mine, idx[:, 1], idx[:, 0])  # the nearest not theirs
    cos = np.einsum("ij,ij->i", v[rows], people.means[np.clip(near, 0, None)])
    other = np.where(near >= 0, np.sqrt(np.clip(2 - 2 * cos, 0, None)), np.inf)
    out = []
    for row, p, margin, j in zip(rows.tolist(), owner, (own_d - other).tolist(),
                                 near.tolist(), strict=True):
        if j >= 0 and answers.different(ref_key("person", p),
                                        ref_key("person", int(people.ids[j]))):
            margin += AFTER_NO  # the two were answered apart: its faces between are suspect
        if (c := _chance(EDGE_CHANCE, margin)) > 0:
            n = len(people.rows[p])
            out.append(_question(_person_side(lib, people, p), _face_side(lib, row),
                                 "edge", c * (n - 1), margin))
    return out


def _strays(lib: Library, people: _People, shown: dict[int, set[int]]) -> list[Question]:
    rows = np.flatnonzero(lib.persons < 0)
    if len(rows) == 0 or len(people.ids) == 0:
        return []
    dist, idx = search(build_index(people.centres), as_unit_float32(lib.vectors[rows]), 1)
    photos = None if lib.photos is None else np.asarray(lib.photos)
    out = []
    for row, d, j in zip(rows.tolist(), dist[:, 0].tolist(), idx[:, 0].tolist(), strict=True):
        if j < 0 or d > NEAR or (c := _chance(STRAY_CHANCE, d)) <= 0:
            continue
        p = int(people.ids[j])
        if photos is not None and int(photos[row]) in shown.get(p, set()):
            continue  # the person is already someone else in this photo
        out.append(_question(_person_side(lib, people, p), _face_side(lib, row), "stray",
                             c * int(people.sizes[j]), d))
    return out


def _parts(lib: Library, people: _People, params: ClusterParams,
           answers: Closure) -> list[Question]:
    """Each big person's faces re-clustered stricter; every part but the largest is
    asked against the rest of its person."""
    strict = stricter(params)
    out = []
    for i in np.argsort(-people.sizes, kind="stable")[:PART_PEOPLE].tolist():
        if people.sizes[i] < PART_MIN:
            break
        p = int(people.ids[i])
        rows = people.rows[p]  # nearest the person's centre first
        photos = None if lib.photos is None else np.asarray(lib.photos)[rows]
        found = split_faces(lib.face_ids[rows], lib.vectors[rows], photos, strict)
        me = ref_key("person", p)
        for part in found[1:]:
            if any(answers.settled(me, ref_key("face", f)) for f in part.faces):
                continue  # an answer already said what (some of) these faces are
            inside = np.isin(lib.face_ids[rows], part.faces)
            rest = rows[~inside]
            d = _centre_distance(lib.vectors[rows[inside]], lib.vectors[rest])
            rest_side = Side(me, p, tuple(int(f) for f in lib.face_ids[rest[:SHOWN]]),
                             len(rest))
            part_side = Side(part_key(part.faces[0]), None, part.shown, len(part.faces),
                             part.faces)
            gain = _chance(PART_CHANCE, d) * len(part.faces) * len(rest)
            out.append(_question(rest_side, part_side, "part", gain, d))
    return out


def _centre_distance(a: np.ndarray, b: np.ndarray) -> float:
    ca, cb = (as_unit_float32(x).mean(axis=0) for x in (a, b))
    ca, cb = (c / max(float(np.linalg.norm(c)), 1e-12) for c in (ca, cb))
    return float(np.linalg.norm(ca - cb))


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
                   order: Order = "gain", params: ClusterParams | None = None,
                   observed: Observed | None = None) -> list[Question]:
    """Every question worth asking, best first (see the module docstring).

    ``skip`` maps ids answered "not sure" to the faces both sides had then: such a
    question is left out until its sides have more faces. ``params``: the library's
    clustering settings; without them no part is asked about. ``observed``: the
    person-to-person answers so far, which scale the chance of such questions.
    """
    people = _people(lib)
    if order == "naive":
        found = _naive(lib, people)
    else:
        shown = _shown_in(lib)
        scale = (observed or Observed()).scale()
        found = (_fragments(lib, people, shown, scale) + _edges(lib, people, answers)
                 + _strays(lib, people, shown))
        if params is not None:
            found += _parts(lib, people, params, answers)
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
