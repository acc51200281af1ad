"""``facecluster review``: the questions on a terminal, as JSON, and one answer at a time.

- ``facecluster review``: one question at a time; a side-by-side picture of the two
  sides is written to ``state/review/question.jpg`` (its path printed), and the answer
  is a key: ``y`` yes, ``n`` no, ``s`` not sure, ``q`` quit (end of input quits too).
  Every answer is written at once, so quitting loses nothing.
- ``facecluster review --json [--limit N]``: the open questions for scripts.
- ``facecluster review answer ID yes|no|unsure``: record one answer. It reads
  labels.toml and writes it through :mod:`daemon.people.naming`; it does not load the faces.

Answers apply at the next clustering: within seconds in the running service (which
re-reads labels.toml), or at the next ``facecluster scan`` (which re-clusters without
re-indexing anything when no photo is new).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from daemon.config import Config
from daemon.people import labels as labels_mod
from daemon.review import record

if TYPE_CHECKING:
    from daemon.review.questions import Question, Side

PICTURE = Path("review") / "question.jpg"
"""Under the state folder: the picture of the question being asked."""
KEYS = {"y": "yes", "n": "no", "s": "unsure"}
DEFAULT_LIMIT = 25


def cmd_answer(cfg: Config, qid: str, answer: str, out: TextIO | None = None) -> int:
    """``facecluster review answer ID yes|no|unsure``."""
    out = out or sys.stdout
    current = labels_mod.load_labels(cfg.labels_file)
    store = None
    if answer == "unsure":  # only "not sure" counts faces: the store is not read otherwise
        from daemon.store import Store

        store = Store.open_readonly(cfg.state_dir)
    try:
        edit = record.record_answer(cfg.labels_file, cfg.state_dir, current, qid, answer,
                                     store)
    finally:
        if store is not None:
            store.close()
    if edit is None:
        print(f"{qid}: not sure; asked again when new photos add faces to it", file=out)
    elif edit.changed:
        print(f"{qid}: {answer} (in {cfg.labels_file}); it applies at the next clustering",
              file=out)
    else:
        print(f"{qid}: {cfg.labels_file} already says so; nothing changed", file=out)
    return 0


def cmd_json(pipeline, limit: int, order: str, out: TextIO | None = None) -> int:  # noqa: ANN001
    """``facecluster review --json [--limit N]``."""
    out = out or sys.stdout
    from daemon.review import session  # the clustering code: not for `review answer`

    chosen = session.questions(pipeline.store, pipeline.engine_id, pipeline.labels,
                               pipeline.cfg.state_dir, pipeline.cfg.clustering,
                               order=order)[: max(0, limit)]
    json.dump(session.as_json(pipeline.store, chosen), out, ensure_ascii=False)
    out.write("\n")
    return 0


def _describe(side: Side, labels: labels_mod.Labels) -> str:
    if side.person is None:
        return f"{side.ref} (one face)" if side.size == 1 else (
            f"{side.ref}: {side.size} faces the other side's person holds now")
    name = labels.label(side.person).name
    who = f"{side.ref} ({name})" if name else side.ref
    return f"{who}, {side.size} faces"


def _ask(q: Question, number: int, total: int, picture: Path, labels: labels_mod.Labels,
         read: Callable[[], str], out: TextIO) -> str | None:
    """One question on the terminal: the answer word, or None to quit."""
    print(f"\n[{number}/{total}] Are these the same person?", file=out)
    print(f"  left:  {_describe(q.a, labels)}", file=out)
    print(f"  right: {_describe(q.b, labels)}", file=out)
    print(f"  picture: {picture}", file=out)
    while True:
        print("  y = yes, n = no, s = not sure, q = quit: ", end="", file=out, flush=True)
        line = read()
        if not line:  # end of input
            print(file=out)
            return None
        key = line.strip().lower()[:1]
        if key == "q":
            return None
        if key in KEYS:
            return KEYS[key]
        print(f"  {line.strip()!r}? ", end="", file=out)


def cmd_loop(pipeline, limit: int, order: str, stdin: TextIO | None = None,  # noqa: ANN001
             out: TextIO | None = None) -> int:
    """``facecluster review``: ask on the terminal until the questions or the user end."""
    stdin, out = stdin or sys.stdin, out or sys.stdout
    from daemon.review import session
    from daemon.review.answers import answer_closure
    from daemon.review.picture import write_question_picture
    from daemon.review.questions import unsettled

    cfg: Config = pipeline.cfg
    todo = session.questions(pipeline.store, pipeline.engine_id, pipeline.labels,
                             cfg.state_dir, cfg.clustering, order=order)[: max(0, limit)]
    if not todo:
        print("no questions: every person looks settled (new photos may bring some)",
              file=out)
        return 0
    picture = cfg.state_dir / PICTURE
    current = pipeline.labels
    answered = unsure = 0
    for number, q in enumerate(todo, start=1):
        if not unsettled([q], answer_closure(current)):
            continue  # an earlier answer of this session settled it
        shown = [*q.a.faces, *q.b.faces]
        faces = {f.id: f for f in pipeline.store.faces(ids=shown)}
        write_question_picture(picture, [faces[f] for f in q.a.faces if f in faces],
                               [faces[f] for f in q.b.faces if f in faces],
                               cfg.detection.max_pixels, pipeline.store.face_crops(shown))
        answer = _ask(q, number, len(todo), picture, current, stdin.readline, out)
        if answer is None:
            break
        record.record_answer(cfg.labels_file, cfg.state_dir, current, q.id, answer,
                              pipeline.store)
        current = labels_mod.load_labels(cfg.labels_file)
        answered += answer != "unsure"
        unsure += answer == "unsure"
    print(f"{answered} answer(s) recorded in {cfg.labels_file}; they apply at the next "
          "clustering (the running service, or `facecluster scan`)"
          + (f"; {unsure} not sure" if unsure else ""), file=out)
    return 0


def cmd_split(pipeline, pid: int, as_json: bool, stdin: TextIO | None = None,  # noqa: ANN001
              out: TextIO | None = None) -> int:
    """``facecluster split PERSON [--json]``: offer the parts of a person as questions."""
    from daemon.review.picture import write_question_picture
    from daemon.review.split import person_parts

    stdin, out = stdin or sys.stdin, out or sys.stdout
    key = labels_mod.person_key(pid)
    faces, parts = person_parts(pipeline.store, pipeline.engine_id, pid,
                                pipeline.cfg.clustering)
    by_id = {f.id: f for f in faces}
    if as_json:
        parts_json = [{"faces": [_face_json(by_id[f]) for f in p.shown],
                       "size": len(p.faces)} for p in parts]
        json.dump({"person": key, "parts": parts_json}, out, ensure_ascii=False)
        out.write("\n")
        return 0
    if len(parts) < 2:
        print(f"{key}: no clear parts with stricter settings; nothing to split", file=out)
        return 0
    main, rest = parts[0], parts[1:]
    print(f"{key}: {len(faces)} faces fall into {len(parts)} parts with stricter settings "
          f"({', '.join(str(len(p.faces)) for p in parts)} faces); the largest stays "
          f"{key}", file=out)
    picture = pipeline.cfg.state_dir / PICTURE
    answered = 0
    for number, part in enumerate(rest, start=2):
        write_question_picture(picture, [by_id[f] for f in main.shown],
                               [by_id[f] for f in part.shown],
                               pipeline.cfg.detection.max_pixels,
                               pipeline.store.face_crops([*main.shown, *part.shown]))
        print(f"\n[part {number}/{len(parts)}] Is the right side ({len(part.faces)} faces) "
              f"the same person as the left ({key})?\n  picture: {picture}", file=out)
        answer = _key(stdin.readline, out)
        if answer is None:
            break
        if answer != "unsure":
            from daemon.people import naming

            naming.answer(pipeline.cfg.labels_file, pid,
                          [f"face-{f}" for f in part.faces], same=answer == "yes")
        answered += 1
    print(f"{answered} part(s) answered; the next clustering applies them", file=out)
    return 0


def _face_json(face) -> dict:  # noqa: ANN001 - a FaceRecord
    return {"face": f"face-{face.id}", "photo": str(face.path),
            "box": [round(float(x)) for x in face.box]}


def _key(read: Callable[[], str], out: TextIO) -> str | None:
    """y / n / s as an answer word, q or end of input as None."""
    while True:
        print("  y = yes, n = no (a person of their own), s = not sure, q = quit: ",
              end="", file=out, flush=True)
        line = read()
        key = line.strip().lower()[:1]
        if not line or key == "q":
            return None
        if key in KEYS:
            return KEYS[key]
