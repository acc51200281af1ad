"""The naming commands: ``name``, ``merge``, ``hide``, ``not`` and ``people PERSON --faces``.

They find who PERSON means in the store (an id like ``person-0007``, a name, or an
album folder), then change ``labels.toml`` through :mod:`daemon.people.naming`, which keeps the
user's comments and layout. The running service applies the change as it does a hand
edit; the commands never touch the store or the albums themselves.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from shlex import quote
from typing import TYPE_CHECKING

from daemon.people import labels, naming

if TYPE_CHECKING:
    from daemon.stages.pipeline import Pipeline


class PersonNotFound(Exception):
    """PERSON on the command line names nobody; the message says where to look."""


def faces_hint(person: str) -> str:
    """The command listing a person's faces, ready to paste (a name with spaces quoted)."""
    return f"facecluster people {quote(person)} --faces"


def resolve(pipeline: Pipeline, who: str) -> list[int]:
    """The person ids ``who`` means: ``person-0007`` (or ``7``), a name, or an album folder.

    A name or a folder of a merged album means every person in it.
    """
    known = {rec.id for rec in pipeline.store.people() if not rec.retired}
    key = who.strip()
    if key.isdigit() or key.lower().startswith("person-"):
        try:
            pid = int(key) if key.isdigit() else labels.parse_person_key(key.lower())
        except labels.LabelsError:
            pid = None
        if pid is not None and pid in known:
            return [pid]
        if pid is not None:
            raise PersonNotFound(f"there is no {labels.person_key(pid)}: see `facecluster people`")
    wanted = labels.normalize_name(who)
    by_name = sorted(pid for pid, lab in pipeline.labels.people.items() if lab.name == wanted)
    if by_name:
        return by_name
    for plan in pipeline.plans():
        if plan.folder == who and plan.person_ids:
            return list(plan.person_ids)
    raise PersonNotFound(
        f"nobody is called {who!r}: give an id like person-0007, a name or an album folder "
        "(see `facecluster people`)"
    )


def _service_note(state_dir: Path) -> str:
    from daemon.service.status import read_service_status

    if read_service_status(state_dir) is not None:
        return "the running service applies it within seconds"
    return "it applies when the service starts or at the next `facecluster scan`"


def _report(cfg_labels: Path, edit: naming.LabelsEdit, what: str, state_dir: Path) -> None:
    if not edit.changed:
        print(f"{cfg_labels} already says so; nothing changed")
        return
    print(f"{what} (in {cfg_labels}); {_service_note(state_dir)}")


def cmd_name(pipeline: Pipeline, args: argparse.Namespace) -> int:
    """``facecluster name PERSON NAME``: name or rename (all of a merged album)."""
    ids = resolve(pipeline, args.person)
    name = naming.check_name(args.name)
    edit = naming.name_people(pipeline.cfg.labels_file, ids, name)
    keys = ", ".join(labels.person_key(i) for i in ids)
    _report(pipeline.cfg.labels_file, edit, f"{keys} is now {name!r}", pipeline.cfg.state_dir)
    # The same name merges albums (the labels.toml rule): say so, it may be a surprise.
    others = [pid for pid, lab in pipeline.labels.people.items()
              if lab.name == name and pid not in ids]
    if others and edit.changed:
        print(f"note: {', '.join(labels.person_key(i) for i in sorted(others))} is also called "
              f"{name!r}: they now share one album (`facecluster name` another name to undo)")
    return 0


def cmd_merge(pipeline: Pipeline, args: argparse.Namespace) -> int:
    """``facecluster merge PERSON PERSON... [--name N]``: one album under one name."""
    ids: list[int] = []
    for who in args.people:
        ids += [i for i in resolve(pipeline, who) if i not in ids]
    if len(ids) < 2:
        raise PersonNotFound("merge needs at least two different people")
    name = args.name
    if name is None:
        names = sorted({lab.name for i in ids if (lab := pipeline.labels.label(i)).name})
        if len(names) != 1:
            which = f"they have different names ({', '.join(names)})" if names else "no name"
            raise naming.NamingError(f"{which}: choose the name with --name")
        name = names[0]
    edit = naming.name_people(pipeline.cfg.labels_file, ids, name)
    keys = ", ".join(labels.person_key(i) for i in ids)
    _report(pipeline.cfg.labels_file, edit, f"{keys} merged as {naming.check_name(name)!r}",
            pipeline.cfg.state_dir)
    return 0


def cmd_hide(pipeline: Pipeline, args: argparse.Namespace) -> int:
    """``facecluster hide PERSON [--show]``: no album for them (or one again)."""
    ids = resolve(pipeline, args.person)
    edit = None
    for pid in ids:
        edit = naming.hide_person(pipeline.cfg.labels_file, pid, hidden=not args.show)
    assert edit is not None
    keys = ", ".join(labels.person_key(i) for i in ids)
    verb = "shown again" if args.show else "hidden"
    _report(pipeline.cfg.labels_file, edit, f"{keys} {verb}", pipeline.cfg.state_dir)
    return 0


def _photo_entry(photo: str, roots: Sequence[Path]) -> tuple[str, Path | None]:
    """The exclude entry for a photo argument, and its absolute path when it is known."""
    candidate = Path(photo).expanduser()
    if candidate.exists() or candidate.is_absolute():
        return labels.photo_entry(candidate, roots), Path(os.path.abspath(candidate))
    for root in roots:  # already relative to a watched folder
        if (root / photo).exists():
            return Path(os.path.normpath(photo)).as_posix(), root / photo
    return photo, None


def cmd_not(pipeline: Pipeline, args: argparse.Namespace) -> int:
    """``facecluster not PERSON PHOTO|face-N``: this photo or face is not them."""
    ids = resolve(pipeline, args.person)
    faces = [f for f in pipeline.store.faces(engine=pipeline.engine_id) if f.person_id in ids]
    face_id = labels.parse_face_key(args.what)
    if face_id is not None:
        owners = [f.person_id for f in faces if f.id == face_id]
        if not owners:
            raise PersonNotFound(
                f"{args.what} is not one of {args.person}'s faces "
                f"(see `{faces_hint(args.person)}`)"
            )
        targets, entry = [owners[0]], args.what
    else:
        entry, absolute = _photo_entry(args.what, pipeline.cfg.watch)
        targets = sorted({f.person_id for f in faces if absolute and f.path == absolute})
        if not targets:
            raise PersonNotFound(
                f"{args.what} shows no face of {args.person} "
                f"(see `{faces_hint(args.person)}`)"
            )
    edit = None
    for pid in targets:
        assert pid is not None
        edit = naming.exclude(pipeline.cfg.labels_file, pid, [entry])
    assert edit is not None
    keys = ", ".join(labels.person_key(i) for i in targets if i is not None)
    _report(pipeline.cfg.labels_file, edit, f"{entry} is not {keys}", pipeline.cfg.state_dir)
    return 0


def cmd_faces(pipeline: Pipeline, args: argparse.Namespace) -> int:
    """``facecluster people PERSON --faces [--json]``: every face id, photo and box."""
    ids = resolve(pipeline, args.person)
    rows = []
    for f in pipeline.store.faces(engine=pipeline.engine_id):
        if f.person_id not in ids:
            continue
        lab = pipeline.labels.label(f.person_id)
        excluded = labels.excludes_face(lab, f.id) or labels.excludes_photo(
            lab, f.path, pipeline.cfg.watch
        )
        rows.append({
            "face": f"face-{f.id}",
            "person": labels.person_key(f.person_id),
            "photo": str(f.path),
            "box": [round(v) for v in f.box],
            "score": round(f.score, 3),
            "excluded": excluded,
        })
    rows.sort(key=lambda r: (r["photo"], r["face"]))
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    print(f"{'face':<12} {'person':<12} {'box (x y w h)':<22} photo")
    for r in rows:
        box = " ".join(str(v) for v in r["box"])
        note = "  (excluded)" if r["excluded"] else ""
        print(f"{r['face']:<12} {r['person']:<12} {box:<22} {r['photo']}{note}")
    return 0
