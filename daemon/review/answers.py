"""The answers in labels.toml as constraints on today's faces.

labels.toml keeps every answer where the user can read it: a person's ``same_as`` and
``not`` lists name people (``person-0007``) and faces (``face-12``). Those names outlive
the store (the identity anchors find their faces again after ``rebuild`` or an engine
change); this module turns them into what a clustering obeys:

- :func:`answer_closure`: the answers with their consequences (:func:`daemon.cluster.closure`);
- :func:`canonical_people`: people the answers made one -> the id that stands for them
  (a named one first), so that their faces count as that person's;
- :func:`face_links`: must-link / cannot-link rows for :func:`daemon.cluster.cluster_faces`,
  and the (face, person) pairs a face may never be given.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Mapping, Sequence, Set
from dataclasses import dataclass

import numpy as np

from daemon.cluster.links import Closure, Links, closure
from daemon.people.labels import Labels, parse_ref, person_key


def _standing(labels: Labels) -> Callable[[Hashable], tuple]:
    """Which member of a group stands for it: a named person first, then a person with an
    entry in labels.toml, then the smallest person, then the smallest face."""
    def rank(entity: Hashable) -> tuple:
        kind, number = parse_ref(str(entity)) or ("face", 0)
        if kind == "face":
            return (3, number)
        lab = labels.people.get(number)
        return (0 if lab and lab.name else 1 if lab else 2, number)

    return rank


def answer_closure(labels: Labels) -> Closure:
    """Every ``same_as`` / ``not`` of labels.toml, with consequences.

    Entities are the references as written (``person-0007``, ``face-12``); a group is
    stood for by the member :func:`_standing` ranks first.
    """
    same, different = [], []
    for pid, lab in labels.people.items():
        me = person_key(pid)
        same += [(me, r) for r in lab.same_as]
        different += [(me, r) for r in lab.different]
    return closure(same, different, prefer=_standing(labels))


def canonical_people(answers: Closure, labels: Labels,
                     known: Set[int] | None = None) -> dict[int, int]:
    """Person id -> the person id that stands for its group, for every other person of a
    group with two people or more.

    With ``known`` (the people the store has), only a known person can stand for a group:
    an answer naming an id nobody has (a typo) never hands faces to it, and a group
    without a known person maps nobody.
    """
    rank = _standing(labels)
    out: dict[int, int] = {}
    for members in answers.members().values():
        people = sorted((m for m in members if str(m).startswith("person-")), key=rank)
        ids = [parse_ref(str(m))[1] for m in people]  # type: ignore[index]
        usable = [p for p in ids if known is None or p in known]
        if len(ids) < 2 or not usable:
            continue
        out.update((p, usable[0]) for p in ids if p != usable[0])
    return out


@dataclass(frozen=True)
class FaceConstraints:
    """The answers on one clustering's rows."""

    links: Links
    excluded: frozenset[tuple[int, int]]
    """(face id, person id): a face an answer says is not that person (or not anyone
    of that person's group)."""
    person_for: Mapping[int, int]
    """Face id -> the person an answer says it is (the group's standing person)."""


def _face_rows(entity: str, row_of: Mapping[int, int],
               face_matches: Mapping[int, Sequence[int]]) -> list[int]:
    """Rows of today's faces of a ``face-N`` reference: its anchored matches, else the
    store's face N itself."""
    ref = parse_ref(entity)
    assert ref is not None and ref[0] == "face"
    today = face_matches.get(ref[1])
    if today is None:
        today = [ref[1]]
    return [row_of[f] for f in today if f in row_of]


def face_links(answers: Closure, face_ids: Sequence[int] | np.ndarray,
               person_of: Mapping[int, int],
               face_matches: Mapping[int, Sequence[int]]) -> FaceConstraints:
    """Must-link / cannot-link rows for the faces ``face_ids`` (row = position).

    ``person_of`` maps a face id to the person it is known to be (the store's previous
    clustering, the identity anchors); ``face_matches`` an anchored ``face-N`` to
    today's face ids. A face an answer names belongs to its reference's group, whatever
    person it had.
    """
    groups = answers.members()
    if not groups:
        return FaceConstraints(Links(), frozenset(), {})
    ids = np.asarray(face_ids, dtype=np.int64)
    row_of = {int(f): r for r, f in enumerate(ids.tolist())}
    order = sorted(groups, key=str)
    index = {g: k for k, g in enumerate(order)}
    pinned: list[set[int]] = [set() for _ in order]
    for g in order:
        for e in groups[g]:
            if str(e).startswith("face-"):
                pinned[index[g]].update(_face_rows(str(e), row_of, face_matches))
    claimed = set().union(*pinned)
    group_of_person: dict[int, int] = {}
    for g in order:
        for e in groups[g]:
            ref = parse_ref(str(e))
            if ref and ref[0] == "person":
                group_of_person[ref[1]] = index[g]
    members: list[set[int]] = [set(p) for p in pinned]
    for f, p in person_of.items():
        g = group_of_person.get(p)
        r = row_of.get(int(f))
        if g is not None and r is not None and r not in claimed:
            members[g].add(r)
    apart = tuple(sorted((min(index[a], index[b]), max(index[a], index[b]))
                         for a, b in (tuple(pair) for pair in answers.apart)))
    people_of: dict[int, list[int]] = defaultdict(list)
    for p, g in group_of_person.items():
        people_of[g].append(p)
    excluded = {(int(ids[r]), p) for a, b in apart for g, h in ((a, b), (b, a))
                for r in pinned[g] for p in people_of[h]}
    links = Links(
        members=tuple(np.array(sorted(m), np.int64) for m in members),
        pinned=tuple(np.array(sorted(p), np.int64) for p in pinned),
        apart=apart,
    )
    person_for = {}
    for g, rows in enumerate(pinned):
        lead = parse_ref(str(order[g]))
        if lead is not None and lead[0] == "person":
            person_for.update((int(ids[r]), lead[1]) for r in rows)
    return FaceConstraints(links, frozenset(excluded), person_for)
