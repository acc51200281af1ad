"""Which other people each person may be the same as: makes a wrong split cheap to fix.

The clustering prefers leaving one person in two albums over mixing two people in one.
A split is fixed with one line in labels.toml, if the user can find the other half:
``people --json`` and ``state/people.toml`` list, for each person, the nearest other
people by the distance between their centres (the normalised mean of their faces).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from daemon.cluster.neighbours import build_index, search

NEAREST = 3
"""How many look-alikes to list per person."""
WITHIN = 0.55
"""Farther centres are not worth a look (L2 on unit vectors; one person's faces lie
within about 0.4 of each other, strangers' mostly beyond 0.45)."""


@dataclass(frozen=True)
class LookAlike:
    """Another person whose centre is near this person's."""

    person_id: int
    distance: float


def nearest_people(person_ids: Sequence[int | None] | np.ndarray, vectors: np.ndarray,
                   k: int = NEAREST, within: float = WITHIN) -> dict[int, list[LookAlike]]:
    """For each person (faces with person None are ignored), up to ``k`` other people
    whose centres lie within ``within``, nearest first (ties to the smaller id).

    ``person_ids[i]`` is the person of ``vectors[i]``. Pure: the same input gives the
    same output, and nothing is read or written.
    """
    pid = np.array([-1 if p is None else int(p) for p in person_ids], dtype=np.int64)
    v = np.asarray(vectors, dtype=np.float32)
    if len(pid) != len(v):
        raise ValueError(f"{len(v)} vectors but {len(pid)} person ids")
    has = np.flatnonzero(pid >= 0)
    people, member_of = np.unique(pid[has], return_inverse=True)
    if len(people) < 2:
        return {int(p): [] for p in people}
    # People x faces membership times the vectors: one read of the (memory-mapped)
    # vectors and no sorted copy of them (a float64 copy was ~0.9 GB at a million faces).
    from scipy import sparse

    members = sparse.csr_matrix(
        (np.ones(len(has), np.float32), (member_of, has)), shape=(len(people), len(v))
    )
    sums = np.asarray(members @ v, dtype=np.float64)
    centres = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    centres = centres.astype(np.float32)
    dist, idx = search(build_index(centres), centres, min(k + 1, len(people)))
    out: dict[int, list[LookAlike]] = {}
    for row, p in enumerate(people):
        pairs = sorted((float(d), int(people[j])) for d, j in zip(dist[row], idx[row],
                                                                  strict=True)
                       if j >= 0 and j != row and d <= within)
        out[int(p)] = [LookAlike(q, round(d, 3)) for d, q in pairs[:k]]
    return out
