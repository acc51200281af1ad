"""The user's answers as must-link and cannot-link constraints on a clustering.

An answer says that two things -- people (``person-0007``) or single faces (``face-12``)
-- are, or are not, one human. :func:`closure` takes their consequences (union-find):
A same as B and B same as C puts A, B, C in one group; A same as B and B not C keeps
A's group apart from C's. A "not" inside one group contradicts the "same"s and is
reported and left out (the "same"s win: undoing a merge is one more answer, a silent
split is a lost album).

:func:`apply_links` is the post-pass on a clustering's labels: the clusters made mostly
of one group's faces become one cluster, the group's single faces join it, and a
cluster that holds faces of two groups kept apart is cut between them, every other face
going with the group of its nearest face. It is pure: labels in, labels out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from daemon.cluster.neighbours import as_unit_float32

NOISE = -1
MAJORITY = 0.5
"""A cluster is a group's when more than this share of its faces are the group's."""


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[Hashable, Hashable] = {}

    def find(self, x: Hashable) -> Hashable:
        self.parent.setdefault(x, x)
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: Hashable, b: Hashable) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb, key=_order)] = min(ra, rb, key=_order)


def _order(x: Hashable) -> tuple[str, str]:
    return (type(x).__name__, str(x))


@dataclass(frozen=True)
class Closure:
    """The answers with their consequences."""

    group_of: dict[Hashable, Hashable] = field(default_factory=dict)
    """Every entity an answer mentions -> its group (one of its members)."""
    apart: frozenset[frozenset[Hashable]] = frozenset()
    """Pairs of groups that are different people."""
    contradictions: tuple[tuple[Hashable, Hashable], ...] = ()
    """"not" answers between two members of one group (left out)."""

    def group(self, entity: Hashable) -> Hashable:
        """The group of ``entity`` (itself when no answer mentions it)."""
        return self.group_of.get(entity, entity)

    def same(self, a: Hashable, b: Hashable) -> bool:
        """Whether the answers say ``a`` and ``b`` are one human."""
        return a == b or self.group(a) == self.group(b)

    def different(self, a: Hashable, b: Hashable) -> bool:
        """Whether the answers (and their consequences) say they are two humans."""
        return frozenset((self.group(a), self.group(b))) in self.apart

    def settled(self, a: Hashable, b: Hashable) -> bool:
        """Whether asking "are ``a`` and ``b`` the same?" would ask what is known."""
        return self.same(a, b) or self.different(a, b)

    def members(self) -> dict[Hashable, list[Hashable]]:
        """Group -> its entities, sorted."""
        out: dict[Hashable, list[Hashable]] = defaultdict(list)
        for entity, group in self.group_of.items():
            out[group].append(entity)
        return {g: sorted(m, key=_order) for g, m in out.items()}


def closure(same: Iterable[tuple[Hashable, Hashable]],
            different: Iterable[tuple[Hashable, Hashable]],
            prefer: Callable[[Hashable], object] | None = None) -> Closure:
    """The transitive closure of the answers.

    ``prefer`` ranks entities (smaller first) to choose which member stands for its
    group; by default the smallest. A group holding an entity of a ``not`` pair twice is
    a contradiction: that pair is dropped and listed.
    """
    uf = _UnionFind()
    different = list(different)
    for a, b in same:
        uf.union(a, b)
    for a, b in different:
        uf.find(a), uf.find(b)
    rank = prefer or _order
    groups: dict[Hashable, list[Hashable]] = defaultdict(list)
    for entity in list(uf.parent):
        groups[uf.find(entity)].append(entity)
    leader = {root: min(m, key=lambda e: (rank(e), _order(e))) for root, m in groups.items()}
    group_of = {e: leader[uf.find(e)] for e in uf.parent}
    apart: set[frozenset[Hashable]] = set()
    contradictions = []
    for a, b in different:
        ga, gb = group_of[a], group_of[b]
        if ga == gb:
            contradictions.append((a, b))
        else:
            apart.add(frozenset((ga, gb)))
    return Closure(group_of, frozenset(apart), tuple(contradictions))


@dataclass(frozen=True)
class Links:
    """Constraints on the rows of one clustering (row = position in its vectors).

    ``members[g]`` are the rows known to be group ``g`` (a person's faces, the faces
    named in answers); ``pinned[g]`` the rows that must be in group ``g``'s cluster
    (faces an answer names). ``apart`` lists index pairs into ``members`` of groups
    that are different people.
    """

    members: tuple[np.ndarray, ...] = ()
    pinned: tuple[np.ndarray, ...] = ()
    apart: tuple[tuple[int, int], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.members)


def apply_links(labels: np.ndarray, vectors: np.ndarray, links: Links | None) -> np.ndarray:
    """Labels that obey ``links`` (see the module docstring); noise stays -1."""
    out = np.asarray(labels, dtype=np.int64).copy()
    if not links:
        return out
    fresh = [int(out.max(initial=-1)) + 1]

    def new_label() -> int:
        fresh[0] += 1
        return fresh[0] - 1

    sizes = dict(enumerate(np.bincount(out[out != NOISE]).tolist()))
    for rows, pinned in zip(links.members, links.pinned, strict=True):
        _join(out, np.asarray(rows, np.int64), np.asarray(pinned, np.int64), new_label, sizes)
    if links.apart:
        _separate(out, vectors, links, new_label)
    return out


def _join(out: np.ndarray, rows: np.ndarray, pinned: np.ndarray,
          new_label: Callable[[], int], sizes: dict[int, int]) -> None:
    """One cluster for the group: its majority clusters merged, its pinned rows in it.

    ``sizes`` (cluster -> faces) is kept current for the next group."""
    if len(rows) == 0:
        return
    labelled = out[rows][out[rows] != NOISE]
    ids, counts = np.unique(labelled, return_counts=True)
    mine = counts > MAJORITY * np.array([sizes.get(int(c), 0) for c in ids])
    own = ids[mine]
    if len(own):
        target = int(own[np.argmax(counts[mine])])
        if len(own) > 1:
            out[np.isin(out, own)] = target
            sizes[target] = sum(sizes.pop(int(c), 0) for c in own)
    else:
        return  # no cluster is the group's: its faces stay where the clustering put them
    for c in out[pinned]:
        if c != NOISE:
            sizes[int(c)] -= 1
    out[pinned] = target
    sizes[target] = sizes.get(target, 0) + len(pinned)


def _separate(out: np.ndarray, vectors: np.ndarray, links: Links,
              new_label: Callable[[], int]) -> None:
    """Cut every cluster holding faces of two groups kept apart (nearest-face rule)."""
    owner = np.full(len(out), -1, dtype=np.int64)
    for g, rows in enumerate(links.members):
        owner[np.asarray(rows, np.int64)] = g
    apart: dict[int, set[int]] = defaultdict(set)
    for a, b in links.apart:
        apart[a].add(b)
        apart[b].add(a)
    for c in np.unique(out[(owner >= 0) & (out != NOISE)]):
        rows = np.flatnonzero(out == c)
        present = np.unique(owner[rows][owner[rows] >= 0])
        if not any(apart[int(g)] & set(present.tolist()) for g in present):
            continue
        sides = _sides([int(g) for g in present], apart,
                       {int(g): int((owner[rows] == g).sum()) for g in present})
        # A lone face kept apart leaves alone: it takes no neighbours along.
        counts = np.bincount(owner[rows][owner[rows] >= 0])
        refs = rows[(owner[rows] >= 0) & (counts[np.clip(owner[rows], 0, None)] >= 2)]
        if len(refs) == 0:
            refs = rows[owner[rows] >= 0]
        side_of_ref = np.array([sides[int(g)] for g in owner[refs]])
        nearest = _nearest(vectors, rows, refs)
        side = np.where(owner[rows] >= 0, np.array([sides.get(int(g), 0) for g in owner[rows]]),
                        side_of_ref[nearest])
        labels_of = {0: int(c)}
        for s in sorted(set(side.tolist()) - {0}):
            labels_of[s] = new_label()
        out[rows] = [labels_of[int(s)] for s in side]


def _sides(groups: Sequence[int], apart: dict[int, set[int]], size: dict[int, int]
           ) -> dict[int, int]:
    """Groups in one cluster -> a side, so that no two groups kept apart share one;
    the largest group first (side 0 keeps the cluster's label), greedily."""
    sides: dict[int, int] = {}
    for g in sorted(groups, key=lambda g: (-size[g], g)):
        taken = {sides[h] for h in apart[g] if h in sides}
        s = 0
        while s in taken:
            s += 1
        sides[g] = s
    return sides


_BLOCK = 4096  # rows per block, and reference faces at most: 64 MB of similarities


def _nearest(vectors: np.ndarray, rows: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """Index into ``refs`` of the nearest reference face (cosine) for each row.

    A person of tens of thousands of faces is represented by an even sample of
    :data:`_BLOCK` of them, and the rows are read in blocks: memory stays bounded.
    """
    pick = np.arange(len(refs))
    if len(refs) > _BLOCK:
        pick = np.linspace(0, len(refs) - 1, _BLOCK).astype(np.int64)
    ref_vecs = as_unit_float32(vectors[refs[pick]])
    out = np.empty(len(rows), dtype=np.int64)
    for start in range(0, len(rows), _BLOCK):
        block = as_unit_float32(vectors[rows[start:start + _BLOCK]])
        out[start:start + len(block)] = pick[np.argmax(block @ ref_vecs.T, axis=1)]
    return out
