"""Who is who: each person's own faces, photos and sample, as ``facecluster people`` shows.

An album may hold several people (a merge by name) and leaves out what the user
excluded; the numbers and the sample of a person must describe that person alone and
agree with the album. So a person's faces and photos are computed with the album
planner's own exclusion rules (one plan per person: no names, nobody hidden), and the
sample is one of the person's own faces, never another member's of a merged album.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType

from daemon.albums import AlbumPlan, FaceRef, plan_albums
from daemon.people.labels import Labels


@dataclass(frozen=True)
class PersonContent:
    """One person's faces and photos after the user's exclusions."""

    faces: tuple[FaceRef, ...]
    photos: tuple[Path, ...]

    @property
    def sample(self) -> FaceRef | None:
        """The person's clearest face (highest detector score, then lowest id)."""
        if not self.faces:
            return None
        return min(self.faces, key=lambda f: (-f.score, f.face_id))


def person_contents(
    person_photos: Mapping[int, Set[Path]],
    person_faces: Mapping[int, Sequence[FaceRef]],
    labels: Labels,
    watch_roots: Sequence[Path],
) -> dict[int, PersonContent]:
    """Person id -> what is really theirs: their faces and photos minus exclusions."""
    # Strip names and hiding so that each person gets a plan of their own.
    own = Labels(
        MappingProxyType(
            {pid: replace(lab, name=None, hidden=False) for pid, lab in labels.people.items()}
        )
    )
    plans: list[AlbumPlan] = plan_albums(
        person_photos, person_faces, own, set(), "skip", watch_roots
    )
    return {plan.person_ids[0]: PersonContent(plan.faces, plan.photos) for plan in plans}
