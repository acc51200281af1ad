"""Reflect: turn the people in the store into the album tree and ``people.toml``.

Plans say what the album tree should hold (people, labels, config); the album writer
makes the tree match them. The person rows (``facecluster people``) count each person's
own faces, after exclusions (:mod:`daemon.people.roster`). ``state_dir/people.toml`` lists the
unnamed people as ready-to-copy lines, so an album update never writes the user's
``labels.toml``, and the identity conflicts of the last clustering; people newly named are
anchored before each update.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from daemon import albums, cluster
from daemon.config import Config
from daemon.fsutil import atomic_write, utc_now
from daemon.people import labels, roster
from daemon.people.identity import Identity
from daemon.stages.reports import PersonRow
from daemon.store import Store

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class StoredFaces:
    """What the store says, read once per update: the plans and the people rows share it."""

    person_photos: dict[int, set[Path]]
    person_faces: dict[int, list[albums.FaceRef]]
    no_face: set[Path]
    """Indexed photos in which no face was found."""


class Reflect:
    """People → album folders and person rows, for one engine.

    ``current_labels`` returns the labels in force (they are re-read while running);
    ``identity`` anchors the people labels.toml newly refers to and holds the conflicts.
    """

    def __init__(
        self,
        cfg: Config,
        store: Store,
        engine_id: str,
        current_labels: Callable[[], labels.Labels],
        identity: Identity,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.engine_id = engine_id
        self._current_labels = current_labels
        self.identity = identity
        self._look_alikes: dict[int, list[cluster.LookAlike]] | None = None

    @property
    def labels(self) -> labels.Labels:
        """The labels in force now."""
        return self._current_labels()

    def _read_faces(self) -> StoredFaces:
        """Each person's photos and faces, and the indexed photos with no face at all."""
        seen = StoredFaces(defaultdict(set), defaultdict(list), set())
        with_faces: set[Path] = set()
        for f in self.store.faces(engine=self.engine_id):
            with_faces.add(f.path)
            if f.person_id is None:
                continue
            seen.person_photos[f.person_id].add(f.path)
            seen.person_faces[f.person_id].append(
                albums.FaceRef(f.id, f.path, f.box, f.score, f.landmarks)
            )
        seen.no_face.update(
            r.path
            for r in self.store.iter_photos()
            if r.status == "indexed" and r.engine == self.engine_id and r.path not in with_faces
        )
        return seen

    def _plan(self, seen: StoredFaces) -> list[albums.AlbumPlan]:
        return albums.plan_albums(
            seen.person_photos, seen.person_faces, self.labels, seen.no_face,
            self.cfg.no_face, self.cfg.watch,
        )

    def plans(self) -> list[albums.AlbumPlan]:
        """What the album tree should hold now."""
        return self._plan(self._read_faces())

    def write_albums(self) -> albums.AlbumReport:
        """Make the album tree match the people, labels and config."""
        self.identity.refresh(self.store, self.labels, self.cfg.watch, mode="new")
        seen = self._read_faces()
        plans = self._plan(seen)
        report = albums.write_albums(self.cfg.albums_dir, plans, self.cfg.album_mode)
        albums.write_pictures(self.cfg.albums_dir, plans, self.cfg.detection.max_pixels,
                              crops=self.store.face_crops)
        self._write_people_file(self._rows(plans, seen))
        self.store.set_meta("last_albums", utc_now())
        log.info("albums_written", albums=len(plans), added=report.added, removed=report.removed)
        return report

    def people(self, plans: Sequence[albums.AlbumPlan] | None = None) -> list[PersonRow]:
        """Every person with faces, with their name, album folder and a sample photo."""
        seen = self._read_faces()
        return self._rows(self._plan(seen) if plans is None else plans, seen)

    def _rows(self, plans: Sequence[albums.AlbumPlan], seen: StoredFaces) -> list[PersonRow]:
        folder_of = {pid: plan.folder for plan in plans for pid in plan.person_ids}
        # Counts and sample from the person's own faces minus exclusions (issue 10).
        own = roster.person_contents(
            seen.person_photos, seen.person_faces, self.labels, self.cfg.watch
        )
        near = self._nearest_people()
        rows = []
        for rec in self.store.people():
            if rec.retired or rec.face_count == 0:
                continue
            lab = self.labels.label(rec.id)
            folder = folder_of.get(rec.id)
            mine = own.get(rec.id, roster.PersonContent((), ()))
            sample = mine.sample
            rows.append(
                PersonRow(
                    id=rec.id,
                    key=labels.person_key(rec.id),
                    name=lab.name,
                    faces=len(mine.faces),
                    photos=len(mine.photos),
                    album=str(self.cfg.albums_dir / folder) if folder else None,
                    sample=str(sample.path) if sample else None,
                    sample_face=f"face-{sample.face_id}" if sample else None,
                    hidden=lab.hidden,
                    may_be=[labels.person_key(n.person_id) for n in near.get(rec.id, [])],
                )
            )
        return rows

    def _nearest_people(self) -> dict[int, list[cluster.LookAlike]]:
        """Each person's look-alikes, computed once per full re-clustering.

        They take seconds at a million faces and the service writes albums after every
        burst; faces added between two re-clusterings barely move a person's centre.
        """
        if self._look_alikes is None:
            ids, vecs = self.store.vectors(self.engine_id)
            person = self.store.face_persons(self.engine_id)
            self._look_alikes = cluster.nearest_people([person.get(int(i)) for i in ids], vecs)
        return self._look_alikes

    def regrouped(self) -> None:
        """The people were re-clustered: their look-alikes are computed afresh."""
        self._look_alikes = None

    def _write_people_file(self, rows: Sequence[PersonRow]) -> None:
        """Tell the user who is new, without ever touching their labels.toml.

        ``state_dir/people.toml`` lists the unnamed people as ready-to-copy lines.
        """
        lines = [
            "# Generated by facecluster; rewritten after every album update. Do not edit:",
            "# copy a line into labels.toml (under [people]) and write the person's name.",
            "",
        ]
        for c in self.identity.conflicts:  # see daemon.people.identity.conflict
            lines += [f"# CONFLICT: {c['message']}", ""]
        for r in sorted(rows, key=lambda r: -r.faces):
            if r.name or r.hidden or not r.sample:
                continue  # named, hidden on purpose, or every face excluded: nothing to do
            lines.append(f"# {r.faces} faces in {r.photos} photos, e.g. {r.sample}")
            if r.may_be:
                lines.append(f"# may be the same as {', '.join(r.may_be)}")
            lines.append(f'{r.key} = ""')
        target = self.cfg.state_dir / "people.toml"
        try:
            text = "\n".join(lines) + "\n"
            atomic_write(target, text.encode("utf-8", errors="surrogateescape"))
        except OSError as e:
            log.warning("people_file_not_written", path=str(target), error=str(e))

    def find_album(self, who: str) -> albums.AlbumPlan | None:
        """The album plan for a folder name, a person's name, or an id like person-0007
        (the store read once: its folder and its photos)."""
        seen = self._read_faces()
        plans = self._plan(seen)
        by_folder = {plan.folder: plan for plan in plans}
        if who in by_folder:
            return by_folder[who]
        for row in self._rows(plans, seen):
            if who in (row.key, row.name, str(row.id)) and row.album:
                return by_folder.get(Path(row.album).name)
        return None
