"""Names that stay on the right person: the identity anchors, applied to the store.

Identity, part 3 of 3 (its use by the pipeline); the rules are :mod:`daemon.people.anchors`,
the file :mod:`daemon.store.anchors`.

Every ``person-NNNN`` and ``face-N`` that labels.toml refers to is anchored to faces as
the photos show them (content hash + box, see :mod:`daemon.people.anchors`) in
``state_dir/identity.json`` (see :mod:`daemon.store.anchors`). :class:`Identity` keeps
that file current and uses it so that, whatever the store goes through — a re-clustering,
``rebuild`` (even of a corrupt or deleted store), an engine change that re-detects and
re-embeds every face, photos moved or renamed — each of those ids keeps meaning the same
human, or the same face:

- :meth:`Identity.reserve` keeps the store's counters above every id ever handed out or
  written in labels.toml, so a number the user used is never given to a stranger;
- :meth:`Identity.rematch` finds today's faces of the anchored keys;
- :meth:`Identity.assign` maps a fresh clustering onto person ids with those faces, cuts
  clusters shared by people the user keeps apart, and records those as conflicts;
- :meth:`Identity.excluded_pairs` turns anchored ``exclude`` entries into today's faces;
- :meth:`Identity.refresh` records the anchors of what labels.toml refers to now, with a
  spare copy in the album tree (:mod:`daemon.albums.spare`) for when the whole state
  folder is deleted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import structlog

from daemon.albums.dirs import AlbumError
from daemon.albums.spare import keep_spare, read_spare
from daemon.cluster.links import closure
from daemon.fsutil import utc_now
from daemon.people.anchors import (
    AnchoredResult,
    FaceKey,
    PlacedFace,
    SharedCluster,
    anchored_ids,
    match_keys,
)
from daemon.people.labels import MAX_PERSON_ID, Labels, parse_face_key, parse_ref, person_key
from daemon.store import Store
from daemon.store import anchors as anchors_file
from daemon.store.anchors import Anchors, AnchorsError

log = structlog.get_logger(__name__)

RefreshMode = Literal["clustered", "add", "new"]

MAX_ANCHORS_PER_PERSON = 1000
"""Faces recorded per person; enough to find a person again, small enough to rewrite."""


@dataclass(frozen=True)
class Matches:
    """Today's faces of the anchored keys."""

    person_of: dict[int, int] = field(default_factory=dict)
    """Face id today -> the anchored person it showed."""
    faces: dict[int, list[int]] = field(default_factory=dict)
    """Anchored face id (as in ``exclude``) -> today's face ids of it (one per copy)."""


def conflict(shared: SharedCluster, labels_: Labels) -> dict:
    """The report of one shared cluster, as stored and shown by ``facecluster status``."""
    names = [labels_.label(p).name for p in shared.people]
    who = [f"{person_key(p)} ({n})" if n else person_key(p) for p, n in zip(
        shared.people, names, strict=True)]
    return {
        "kind": "shared-cluster",
        "people": [person_key(p) for p in shared.people],
        "names": names,
        "faces": shared.faces,
        "found": utc_now(),
        "message": (
            f"{' and '.join(who)} now fall into one cluster of {shared.faces} faces; each "
            "face went to the person whose anchored faces it is nearest. Check their "
            "albums; give them one name if they are the same person."
        ),
    }


def _groups(labels_: Labels) -> dict[int, Hashable]:
    """People the user referred to -> group; one name is one group (a merge), and so is
    a person with the people its ``same_as`` lists (an answer "yes")."""
    groups = {
        p: ("name", lab.name) if lab.name else ("id", p) for p, lab in labels_.people.items()
    }
    for p in person_refs(labels_) - set(groups):
        groups[p] = ("id", p)
    same = [(groups[p], groups[q]) for p, lab in labels_.people.items()
            for q in _people_in(lab.same_as)]
    joined = closure(same, ())
    return {p: joined.group(g) for p, g in groups.items()}


def _people_in(refs: Iterable[str]) -> list[int]:
    return [n for r in refs if (ref := parse_ref(r)) and ref[0] == "person" for n in [ref[1]]]


def person_refs(labels_: Labels) -> set[int]:
    """Every person id labels.toml refers to: its keys and the people in answers."""
    out = set(labels_.people)
    for lab in labels_.people.values():
        out.update(_people_in((*lab.same_as, *lab.different)))
    return out


def _face_refs(labels_: Labels) -> set[int]:
    return {
        n
        for lab in labels_.people.values()
        for e in (*lab.exclude, *lab.same_as, *lab.different)
        if (n := parse_face_key(e)) is not None
    }


def _photo_refs(labels_: Labels) -> set[str]:
    return {e for lab in labels_.people.values() for e in lab.exclude if parse_face_key(e) is None}


class Identity:
    """The anchors of one state dir, and how they steer the store's person ids.

    Reading commands only read the file; only :meth:`refresh` writes it (from the one
    process that holds the state dir's lock).
    """

    def __init__(self, state_dir: Path, albums_dir: Path | None = None) -> None:
        self.path = Path(state_dir) / anchors_file.FILE_NAME
        self.albums_dir = albums_dir
        self._broken = False
        self._unsaved = False
        try:
            self.anchors = anchors_file.read(self.path)
        except AnchorsError as e:
            log.error(
                "identity_anchors_unreadable",
                error=str(e),
                hint="it is set aside at the next write; ids named in labels.toml are kept "
                "from strangers, but may need checking against `facecluster people`",
            )
            self.anchors = Anchors()
            self._broken = True
        if self._broken or not self.path.exists():
            self._from_spare()
        self._matches: Matches | None = None
        self._conflicts: tuple[dict, ...] = self.anchors.conflicts

    def _from_spare(self) -> None:
        """Take the anchors from the album tree's spare copy, if it has one (the state
        folder was deleted or its copy is broken); they are written back at once."""
        if self.albums_dir is None:
            return
        try:
            data = read_spare(self.albums_dir, anchors_file.FILE_NAME, anchors_file.MAX_BYTES)
            if data is None:
                return
            spare = anchors_file.parse(data.decode("utf-8"))
        except (AlbumError, AnchorsError, OSError, UnicodeDecodeError) as e:
            log.error("identity_spare_unreadable", folder=str(self.albums_dir), error=str(e))
            return
        self.anchors, self._unsaved = spare, True
        log.warning("identity_anchors_from_album_tree", folder=str(self.albums_dir),
                    people=len(spare.people))

    @property
    def matches(self) -> Matches:
        """Today's faces of the anchored keys, as the last :meth:`rematch` found them."""
        return self._matches or Matches()

    @property
    def conflicts(self) -> list[dict]:
        """The conflicts of the last clustering (see :func:`conflict` for the shape)."""
        return list(self._conflicts)

    def reserve(self, store: Store, labels_: Labels) -> None:
        """Keep the store from handing out any person id already handed out or anchored.

        An id that labels.toml mentions but nobody has (a typo ``person-0099``, a hide of
        an id that names nobody) does not move the counter: ``new_person_id`` steps over
        it when it gets there (``skip``), so it is still never
        given to a stranger. A counter such a mention already pushed to the end of the
        ids (``person-1000000000000`` can be neither typed nor named) is repaired.
        """
        a = self.anchors
        if max(a.person_ids_above, store.top_ids()[1]) >= MAX_PERSON_ID:
            self._repair_counter(store)
            a = self.anchors
        faces = max([a.face_ids_above, *a.faces, *_face_refs(labels_)])
        people = max([a.person_ids_above, *a.people])
        store.keep_ids_above(faces, people)

    def _repair_counter(self, store: Store) -> None:
        """Bring the person counter back to the ids really used; people past the last
        usable id lose it (their faces get a fresh id at the next clustering)."""
        anchored = max((p for p in self.anchors.people if p < MAX_PERSON_ID), default=0)
        top = store.repair_person_ids(MAX_PERSON_ID, floor=anchored)
        log.warning("identity_counter_repaired", was=self.anchors.person_ids_above,
                    person_ids_above=top)
        repaired = replace(self.anchors, person_ids_above=top)
        self._write(repaired)
        self.anchors = repaired  # in force for this run even if the file could not be written

    def rematch(self, store: Store) -> Matches:
        """Find today's faces of every anchored key (call before a clustering)."""
        keys: list[FaceKey] = []
        owners: list[tuple[str, int]] = []
        for p, person_keys in sorted(self.anchors.people.items()):
            keys += person_keys
            owners += [("person", p)] * len(person_keys)
        for f, k in sorted(self.anchors.faces.items()):
            keys.append(k)
            owners.append(("face", f))
        rows = store.face_keys(hashes={k.photo for k in keys}) if keys else []
        placed = [
            PlacedFace(r.id, r.photo_id, FaceKey(r.content_hash, r.box))
            for r in rows
            if r.content_hash
        ]
        person_of: dict[int, int] = {}
        faces: dict[int, list[int]] = {}
        for i, found in sorted(match_keys(keys, placed).items()):
            kind, owner = owners[i]
            if kind == "face":
                faces[owner] = found
            else:
                for face_id in found:
                    person_of.setdefault(face_id, owner)
        self._matches = Matches(person_of, faces)
        return self._matches

    def excluded_pairs(self, store: Store, labels_: Labels) -> set[tuple[int, int]]:
        """(face id, person id) pairs of anchored ``exclude`` entries, as the store is today.

        A ``face-N`` entry stands for the anchored face wherever it is now; a photo entry
        for that photo's bytes wherever they now are (moved, renamed). Entries not yet
        anchored are for the caller's literal matching.
        """
        matches = self._matches or self.rematch(store)
        pairs: set[tuple[int, int]] = set()
        by_hash: dict[str, set[int]] = defaultdict(set)
        for pid, lab in labels_.people.items():
            for e in lab.exclude:
                n = parse_face_key(e)
                if n is not None:
                    pairs.update((f, pid) for f in matches.faces.get(n, ()))
                elif e in self.anchors.photos:
                    by_hash[self.anchors.photos[e]].add(pid)
        if by_hash:
            for r in store.face_keys(hashes=by_hash):
                pairs.update((r.id, pid) for pid in by_hash.get(r.content_hash or "", ()))
        return pairs

    def assign(
        self,
        face_ids: Sequence[int],
        labels: Sequence[int] | np.ndarray,
        vectors: np.ndarray,
        previous: Mapping[int, int],
        named: Set[int],
        excluded: Set[tuple[int, int]],
        new_id: Callable[[], int],
        labels_: Labels,
        photos: Mapping[int, int] | None = None,
        provisional: Set[int] = frozenset(),
        alias: Mapping[int, int] | None = None,
    ) -> AnchoredResult:
        """Person ids for a fresh clustering (:func:`daemon.people.anchors.anchored_ids`).

        Uses the matches of the last :meth:`rematch`; records the conflicts found.
        ``alias`` maps people the answers made one to the id that stands for them: their
        anchored faces count as that id's.
        """
        matches = self._matches or Matches()
        person_of = matches.person_of
        if alias:
            person_of = {f: alias.get(p, p) for f, p in person_of.items()}
        result = anchored_ids(
            face_ids, labels, vectors, previous, named, excluded, new_id,
            person_of, _groups(labels_), photos=photos, provisional=provisional,
        )
        self._conflicts = tuple(conflict(s, labels_) for s in result.shared)
        for c in self._conflicts:
            log.warning("identity_conflict", people=c["people"], message=c["message"])
        return result

    def restore(self, store: Store, result: AnchoredResult) -> None:
        """Give anchored person ids that came back their rows (before storing ``result``)."""
        anchored = set(self.anchors.people)
        store.restore_people({p for p in result.assignment.values() if p in anchored})

    def refresh(
        self, store: Store, labels_: Labels, watch: Iterable[Path], *, mode: RefreshMode
    ) -> None:
        """Record anchors for what labels.toml refers to; write the file if it changed.

        ``mode``:

        - ``"clustered"``: the store's people are fresh from a full clustering; each
          person's anchors become their faces now, and an anchored face whose photo is in
          the store but no longer with that person is dropped;
        - ``"add"``: the store may be half re-derived (``rebuild`` of an old store), so
          faces are only added;
        - ``"new"``: only what labels.toml newly refers to is anchored (after a labels
          edit), so that album updates do not rewrite the file for every new face.

        Anchors of photos the store does not hold (not yet re-indexed, unmounted) stay.
        """
        a = self.anchors
        referenced = person_refs(labels_)
        if mode == "new":
            people = dict(a.people)
            people.update(self._person_anchors(store, referenced - set(a.people), False))
        else:
            people = self._person_anchors(store, referenced | set(a.people), mode == "clustered")
        faces = dict(a.faces)
        missing = _face_refs(labels_) - set(faces)
        if missing:
            for r in store.face_keys(face_ids=missing):
                if r.content_hash:
                    faces[r.id] = FaceKey(r.content_hash, r.box)
        photos = dict(a.photos)
        for entry in sorted(_photo_refs(labels_) - set(photos)):
            digest = _photo_hash(store, entry, watch)
            if digest:
                photos[entry] = digest
        if mode == "new" and (people, faces, photos) == (a.people, a.faces, a.photos):
            return
        top_faces, top_people = store.top_ids()
        conflicts = a.conflicts
        if mode == "clustered" and not _same_conflicts(self._conflicts, a.conflicts):
            conflicts = self._conflicts  # else keep the old ones: when they were first found
        new = Anchors(
            people=people,
            faces=faces,
            photos=photos,
            face_ids_above=max(a.face_ids_above, top_faces),
            person_ids_above=max(a.person_ids_above, top_people),
            conflicts=conflicts,
        )
        if new != a or self._broken or self._unsaved:
            self._write(new)

    def _person_anchors(
        self, store: Store, persons: set[int], clustered: bool
    ) -> dict[int, tuple[FaceKey, ...]]:
        old = self.anchors.people
        current: dict[int, set[FaceKey]] = defaultdict(set)
        for r in store.face_keys(person_ids=persons) if persons else []:
            if r.content_hash and r.person_id is not None:
                current[r.person_id].add(FaceKey(r.content_hash, r.box))
        present: set[str] = set()
        if clustered:
            hashes = {k.photo for keys in old.values() for k in keys}
            present = {r.content_hash for r in store.face_keys(hashes=hashes) if r.content_hash}
        out: dict[int, tuple[FaceKey, ...]] = {}
        for p in sorted(persons):
            kept = [k for k in old.get(p, ()) if k.photo not in present]
            keys = sorted(current[p])[:MAX_ANCHORS_PER_PERSON]
            room = MAX_ANCHORS_PER_PERSON - len(keys)
            keys += [k for k in sorted(set(kept) - set(keys))][: max(room, 0)]
            if keys:
                out[p] = tuple(sorted(keys))
        return out

    def _write(self, new: Anchors) -> None:
        try:
            if self._broken and self.path.exists():
                stamp = utc_now().replace(":", "").replace("+0000", "Z")
                aside = self.path.with_name(f"{self.path.name}.broken-{stamp}")
                self.path.rename(aside)
                log.warning("identity_anchors_set_aside", folder=str(aside))
            anchors_file.write(self.path, new)
        except OSError as e:
            log.error("identity_anchors_not_written", path=str(self.path), error=str(e))
            return
        self._broken = self._unsaved = False
        self.anchors = new
        if self.albums_dir is not None:
            try:
                keep_spare(self.albums_dir, anchors_file.FILE_NAME, anchors_file.dumps(new))
            except (AlbumError, OSError) as e:
                log.warning("identity_spare_not_written", folder=str(self.albums_dir),
                            error=str(e))


def _same_conflicts(a: Iterable[dict], b: Iterable[dict]) -> bool:
    def strip(cs: Iterable[dict]) -> list[dict]:
        return [{k: v for k, v in c.items() if k != "found"} for c in cs]

    return strip(a) == strip(b)


def _photo_hash(store: Store, entry: str, watch: Iterable[Path]) -> str | None:
    """The content hash of the photo an ``exclude`` path entry names, if the store has it."""
    candidates = [Path(entry)] if Path(entry).is_absolute() else [r / entry for r in watch]
    for path in candidates:
        rec = store.photo(path)
        if rec is not None and rec.content_hash:
            return rec.content_hash
    return None
