"""People: group the store's faces into people, steered by ``labels.toml``.

A full re-clustering keeps person ids stable (the identity anchors, :mod:`daemon.people.identity`,
give labelled ids back to their humans even in a re-derived store); between two, new faces
join a known person at once when their neighbours agree. Names and "not this person" marks
from the labels steer both; the labels are re-read on request, and an invalid file keeps
the last good ones in force.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import structlog

from daemon import cluster
from daemon.config import Config
from daemon.fsutil import utc_now
from daemon.people import labels
from daemon.people.identity import Identity, person_refs
from daemon.review import dates
from daemon.review.answers import answer_closure, canonical_people, face_links
from daemon.stages.reports import ClusterReport
from daemon.store import FaceRecord, Store

log = structlog.get_logger(__name__)


class KeptDates:
    """``state/photo-dates.json`` as last read, read again only when the file changed
    (its mtime and size): every batch of new faces looks dates up, and re-parsing the
    whole library's dates for each would cost what the library costs."""

    def __init__(self, state_dir: Path) -> None:
        self._state_dir = Path(state_dir)
        self._stamp: tuple[int, int] | None = None
        self._dates: dict[str, str] = {}

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = (self._state_dir / dates.DATES_FILE).stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def of(self, photos: Mapping[str, Path]) -> dict[str, str]:
        """Content hash -> date (``""``: none) for ``photos`` (hash -> path) and every
        photo kept before; only photos never dated are read (and kept)."""
        stamp = self._file_stamp()
        if stamp != self._stamp:
            self._dates, self._stamp = dates.read_dates(self._state_dir), stamp
        fresh = [(h, p) for h, p in photos.items() if h not in self._dates]
        if fresh:
            self._dates = dates.photo_dates(self._state_dir, fresh, self._dates)
            self._stamp = self._file_stamp()
        return self._dates


class People:
    """Faces → people for one engine, with the labels that steer them.

    ``identity`` holds the anchors that map a clustering onto the ids labels.toml uses.
    """

    def __init__(
        self,
        cfg: Config,
        store: Store,
        engine_id: str,
        identity: Identity,
        *,
        report_labels: bool = True,
    ) -> None:
        """``report_labels=False``: a reading command shows labels problems itself, so
        they are not logged as well."""
        self.cfg = cfg
        self._report_labels = report_labels
        self._labels_problem: labels.LabelsError | None = None
        self.store = store
        self.engine_id = engine_id
        self.identity = identity
        self._neighbours: cluster.FaceIndex | None = None
        self._neighbour_ids: set[int] = set()
        # Faces given a person at once since the last full clustering: that clustering
        # decides them afresh (not sticky; see cluster.stable_ids). Kept in memory only:
        # after a restart they count as clustered.
        self._provisional: set[int] = set()
        self.labels = labels.Labels()
        self.labels_error: str | None = None
        self._dates = KeptDates(cfg.state_dir)
        self.reload_labels()

    def reload_labels(self) -> str | None:
        """Re-read labels.toml. On error the last good labels stay; returns the error.

        The last good labels are kept in the state folder (:func:`labels.load_live_labels`),
        so a reading command started while the file is broken sees the same ones.
        """
        self.labels, error = labels.load_live_labels(self.cfg.labels_file, self.cfg.state_dir)
        self._labels_problem = error
        self.labels_error = str(error) if error else None
        self.answers = answer_closure(self.labels)
        self.alias = self._standing_for()
        if self.answers.contradictions:
            log.warning("answers_contradict", file=str(self.cfg.labels_file),
                        pairs=[f"{a} / {b}" for a, b in self.answers.contradictions],
                        hint="a 'not' between people answered 'same' is left out")
        if not self._report_labels:
            return self.labels_error
        if error:
            problems = [*error.problems, *self.unknown_labelled()]
            log.error("labels_invalid", file=str(self.cfg.labels_file), problems=problems)
        elif unknown := self.unknown_labelled():
            log.warning("labels_unknown_people", file=str(self.cfg.labels_file), problems=unknown)
        return self.labels_error

    def unknown_labelled(self) -> list[str]:
        """labels.toml entries naming a person the store never had (once it has people).

        While the file is broken, its entries that are fine are checked: every problem
        of the file is reported at once, a typo'd id beside a broken line too.
        """
        said = self.labels
        if self._labels_problem is not None:
            if self._labels_problem.partial is None:
                return []  # unreadable, or a syntax error: no entries to check
            said = self._labels_problem.partial
        known = [rec.id for rec in self.store.people()]
        return labels.unknown_people(said, known) if known else []

    def labels_problems(self) -> list[str]:
        """Every problem of labels.toml, each once: broken lines, then ids naming nobody."""
        path = str(self.cfg.labels_file)
        broken = list(self._labels_problem.problems) if self._labels_problem else []
        return [
            p if p.startswith(path) else f"{path}: {p}"
            for p in (*broken, *self.unknown_labelled())
        ]

    def _new_person_id(self) -> int:
        """A fresh id, stepping over ids labels.toml mentions, in its answers too (see
        Identity.reserve)."""
        return self.store.new_person_id(skip=person_refs(self.labels))

    def _known_people(self) -> set[int]:
        """The people the store has, and those the anchors bring back."""
        known = {r.id for r in self.store.people() if not r.retired}
        return known | set(self.identity.anchors.people)

    def _standing_for(self, known: set[int] | None = None) -> dict[int, int]:
        """People the answers made one -> the person who stands for them, among the
        ``known`` people: never an id nobody has (a typo)."""
        if not self.answers.group_of:
            return {}
        return canonical_people(self.answers, self.labels,
                                self._known_people() if known is None else known)

    def cluster_params(self) -> cluster.ClusterParams:
        """The engine's measured defaults, with the config's overrides."""
        return cluster.configured_params(self.engine_id, self.cfg.clustering)

    def _excluded(self, faces: Sequence[FaceRecord] | None = None) -> set[tuple[int, int]]:
        """(face id, person id) pairs the user marked "not this person" in labels.toml.

        ``faces`` defaults to every face of the engine, read only when there are
        exclusions at all.
        """
        excluding = {pid: lab for pid, lab in self.labels.people.items() if lab.exclude}
        if not excluding:
            return set()
        pairs = self.identity.excluded_pairs(self.store, self.labels)  # moved, re-derived
        if faces is None:
            faces = self.store.faces(engine=self.engine_id)
        for f in faces:
            for pid, lab in excluding.items():
                if labels.excludes_face(lab, f.id) or labels.excludes_photo(
                    lab, f.path, self.cfg.watch
                ):
                    pairs.add((f.id, pid))
        return pairs

    def recluster(self) -> ClusterReport:
        """Re-cluster every face of the current engine; person ids stay stable."""
        t0 = time.monotonic()
        self.identity.reserve(self.store, self.labels)
        known_people = self._known_people() if self.answers.group_of else set()
        self.alias = self._standing_for(known_people)  # people came and went since
        matches = self.identity.rematch(self.store)
        ids, vecs = self.store.vectors(self.engine_id)
        records = self.store.faces(engine=self.engine_id)
        photos, scores = cluster.face_context(ids, records)
        previous = self._alias(self.store.face_persons(self.engine_id))
        known = self._alias(matches.person_of) | previous
        answered = face_links(self.answers, ids, known, matches.faces)
        groups = cluster.cluster_faces(vecs, self.cluster_params(), photos, scores,
                                       links=answered.links)
        # An answer outranks an earlier clustering (a face answered to be an id nobody
        # has is only kept apart from the people it is not).
        previous |= {f: self.alias.get(p, p) for f, p in answered.person_for.items()
                     if self.alias.get(p, p) in known_people}
        named = {pid for pid, lab in self.labels.people.items() if lab.name}
        excluded = self._excluded(records) | answered.excluded | self._before_birth(records)
        result = self.identity.assign(
            ids, groups, vecs, previous, named, excluded,
            self._new_person_id, self.labels,
            photos=dict(zip(ids.tolist(), photos.tolist(), strict=True)),
            provisional=self._provisional, alias=self.alias,
        )
        self._provisional = set()
        self._neighbours = None  # people changed: the neighbour index is rebuilt on demand
        with self.store.batch():
            self.identity.restore(self.store, result)
            self.store.set_persons(result.assignment)
            # People answered to be someone else left no face behind: retired like any
            # person left empty (their faces counted as the one standing for them).
            kept = set(result.assignment.values())
            self.store.retire_people(result.retired | {p for p in self.alias if p not in kept})
            self.store.set_meta("last_recluster", utc_now())
        self.identity.refresh(self.store, self.labels, self.cfg.watch, mode="clustered")
        people = {p for p in result.assignment.values() if p is not None}
        report = ClusterReport(
            faces=len(ids),
            people=len(people),
            noise=sum(1 for p in result.assignment.values() if p is None),
            retired=len(result.retired),
            seconds=time.monotonic() - t0,
        )
        log.info("reclustered", **report.__dict__)
        return report

    def _alias(self, persons: dict[int, int]) -> dict[int, int]:
        """``persons`` with the people the answers made one under one id."""
        if not self.alias:
            return persons
        return {f: self.alias.get(p, p) for f, p in persons.items()}

    def _neighbour_index(self, leave_out: set[int]) -> cluster.FaceIndex:
        """The neighbour index over the known faces, built once per clustering.

        Rebuilding it per photo would cost seconds at a million faces; instead new faces
        are added to it as they are assigned, and a full re-clustering drops it.
        ``leave_out`` (the faces about to be voted on) is kept out when it is built.
        """
        if self._neighbours is None:
            ids, vecs = self.store.vectors(self.engine_id)
            person = self.store.face_persons(self.engine_id)
            keep = [k for k, i in enumerate(ids) if int(i) not in leave_out]
            photos, _ = cluster.face_context(ids, self.store.faces(engine=self.engine_id))
            self._neighbours = cluster.FaceIndex(
                vecs[keep], [person.get(int(ids[k])) for k in keep], photo_ids=photos[keep],
                face_ids=ids[keep],
            )
            self._neighbour_ids = {int(ids[k]) for k in keep}
        return self._neighbours

    def assign_incremental(self, face_ids: Sequence[int]) -> int:
        """Give new faces to people at once where their neighbourhood is clear.

        First a vote over each person's individual faces (not an averaged centre); a face
        it leaves open is decided by re-clustering its neighbourhood alone
        (:mod:`daemon.cluster.local`), which may also make a new person of it and faces
        nobody was given. What stays open waits for the next full re-clustering.
        Returns how many faces were given a person.
        """
        candidates = [
            f
            for f in self.store.faces(ids=list(face_ids))
            if f.engine == self.engine_id and f.person_id is None  # copies keep theirs
        ]
        if not candidates:
            return 0
        neighbours = self._neighbour_index(leave_out={f.id for f in candidates})
        faces = [f for f in candidates if f.id not in self._neighbour_ids]
        if not faces:
            return 0
        vecs = self.store.face_vectors([f.id for f in faces])
        photo_ids = [f.photo_id for f in faces]
        votes = [self.alias.get(p, p) if p is not None else None
                 for p in cluster.assign_new(neighbours, vecs, self.cluster_params(),
                                             photo_ids)]
        excluded = (self._excluded(faces) | self._answered_not(faces)
                    | self._before_birth(faces))
        assignment = {
            f.id: pid
            for f, pid in zip(faces, votes, strict=True)
            if pid is not None and (f.id, pid) not in excluded
        }
        undecided = [k for k, f in enumerate(faces) if f.id not in assignment]
        if undecided:
            shown: dict[int, set[int]] = defaultdict(set)
            for f in faces:
                if f.id in assignment:
                    shown[f.photo_id].add(assignment[f.id])
            assignment |= self._decide_locally(
                [faces[k] for k in undecided], vecs[undecided], shown, excluded
            )
        neighbours.add(vecs, [assignment.get(f.id) for f in faces], photo_ids,
                       [f.id for f in faces])
        self._neighbour_ids.update(f.id for f in faces)
        if assignment:
            self.store.set_persons(assignment)
            self._provisional.update(assignment)
        return len(assignment)

    def _before_birth(self, faces: Sequence[FaceRecord]) -> set[tuple[int, int]]:
        """(face, person) pairs of photos taken before the person was born (labels.toml's
        ``born``); photo dates are read only when some person has one, and only for the
        photos of ``faces`` (a batch of new faces costs its own photos, not the library)."""
        born = dates.born_after(self.labels, self.alias)
        if not born or not faces:
            return set()
        hashes = self.store.photo_hashes({f.photo_id for f in faces})
        known = self._dates.of(dict(hashes.values()))
        return dates.before_birth(
            ((f.id, hashes.get(f.photo_id, (None, None))[0]) for f in faces), known, born)

    def _answered_not(self, faces: Sequence[FaceRecord]) -> set[tuple[int, int]]:
        """(face, person) pairs the answers forbid among ``faces`` (new faces are rarely
        named in an answer, but a copy of an answered face is)."""
        if not self.answers.apart:
            return set()
        matches = self.identity.matches
        ids = [f.id for f in faces]
        return set(face_links(self.answers, ids, {}, matches.faces).excluded)

    def _decide_locally(self, faces: list[FaceRecord], vecs: np.ndarray,
                        shown: dict[int, set[int]], excluded: set[tuple[int, int]]
                        ) -> dict[int, int]:
        """Face id -> person for the new ``faces`` (and faces nobody was given near them)
        that a re-clustering of their neighbourhood decides; ``shown`` holds the people
        this round already gave a face of each photo (one photo never shows one person
        twice)."""
        assert self._neighbours is not None
        params = self.cluster_params()
        near = set(self._neighbours.faces_near(vecs, 2 * params.vote_k, 2 * params.eps).tolist())
        known = self.store.faces(ids=sorted(near)) if near else []
        rows = [*faces, *known]
        if known:
            vecs = np.vstack([vecs, self.store.face_vectors([f.id for f in known])])
        decision = cluster.decide_locally(
            vecs,
            np.array([cluster.NOISE] * len(faces)
                     + [cluster.NOISE if f.person_id is None else f.person_id for f in known]),
            np.arange(len(rows)) < len(faces),
            params,
            photos=np.array([f.photo_id for f in rows]),
            scores=np.array([f.score for f in rows]),
        )
        out: dict[int, int] = {}
        for row, pid in decision.joins.items():
            f = rows[row]
            if ((f.id, pid) in excluded or pid in self._neighbours.people_in(f.photo_id)
                    or pid in shown[f.photo_id]):
                continue
            out[f.id] = pid
            shown[f.photo_id].add(pid)
        for group in decision.new_people:
            pid = self._new_person_id()
            members = [rows[r].id for r in group]
            out.update((face, pid) for face in members)
            self._neighbours.move([face for face in members if face in near], pid)
        if out:
            log.info("decided_locally", faces=len(out), new_people=len(decision.new_people))
        return out
