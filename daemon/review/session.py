"""Asking and answering, against a store and a labels file.

- :func:`questions` ranks the questions about the store's faces (:mod:`.questions`);
- :func:`as_json` is the scripts' contract, ``facecluster review --json``;
- answers are recorded by :mod:`.record`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from daemon.cluster.dbscan import configured_params
from daemon.config import ClusterConfig
from daemon.people.labels import Labels
from daemon.review.answers import answer_closure
from daemon.review.learn import person_answers
from daemon.review.questions import Library, Order, Question, rank_questions
from daemon.review.record import read_unsure, remember_parts
from daemon.store import Store


def library(store: Store, engine_id: str) -> Library:
    """The engine's faces, vectors and people, as the last clustering left them."""
    ids, vecs = store.vectors(engine_id)
    person, photo = store.face_persons(engine_id), store.face_photos(engine_id)
    persons = np.array([person.get(f, -1) for f in ids.tolist()], dtype=np.int64)
    photos = np.array([photo.get(f, -1) for f in ids.tolist()], dtype=np.int64)
    return Library(ids, vecs, persons, photos)


def questions(store: Store, engine_id: str, labels: Labels, state_dir: Path,
              clustering: ClusterConfig, order: Order = "gain") -> list[Question]:
    """The open questions about the store's faces, best first (``clustering``: the
    config's ``[clustering]``, which the parts of a person are stricter than). The faces
    of the parts asked about are kept in the state folder for their answers."""
    found = rank_questions(library(store, engine_id), answer_closure(labels),
                           read_unsure(state_dir), order=order,
                           params=configured_params(engine_id, clustering),
                           observed=person_answers(labels))
    remember_parts(state_dir, {q.id: q.b.members for q in found if q.kind == "part"})
    return found


def as_json(store: Store, chosen: Sequence[Question]) -> dict:
    """``{"questions": [{"id", "a": {"person", "faces": [F]}, "b": ...}]}``, where F is
    ``{"face": "face-N", "photo": path, "box": [x, y, w, h]}`` (upright full-resolution
    pixels)."""
    wanted = {f for q in chosen for side in (q.a, q.b) for f in side.faces}
    records = {r.id: r for r in store.faces(ids=sorted(wanted))} if wanted else {}

    def side(s) -> dict:  # noqa: ANN001 - a questions.Side
        faces = [{"face": f"face-{f}", "photo": str(records[f].path),
                  "box": [round(float(x)) for x in records[f].box]}
                 for f in s.faces if f in records]
        return {"person": s.ref if s.person is not None else None, "faces": faces}

    return {"questions": [{"id": q.id, "a": side(q.a), "b": side(q.b)} for q in chosen]}
