"""Recording an answer: "yes" / "no" into labels.toml, "not sure" into the state folder.

"yes" and "no" go into a person's ``same_as`` / ``not`` list through
:func:`daemon.people.naming.answer`, the one editor of labels.toml. A question about a
part of a person (``person-0007+part-88``) is answered for all the part's faces: "no"
puts every one of them in the person's ``not`` list (the next clustering moves them out
together), "yes" the faces that were shown in ``same_as``. The part's faces are kept in
the state folder when the question is listed (:func:`remember_parts`). "Not sure" is no knowledge
about the people, so it stays out of the user's file: ``state/review.json`` keeps it with
the faces both sides had, only so that the question comes back when new photos add some.
Light on purpose (no clustering code): ``facecluster review answer`` must be quick.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

import structlog

from daemon.fsutil import atomic_write
from daemon.people import naming
from daemon.people.labels import Labels, parse_ref
from daemon.review.ids import SHOWN, parse_part, parse_question_id

if TYPE_CHECKING:
    from daemon.store import Store  # numpy and sqlite: not for a "yes" or "no"

log = structlog.get_logger(__name__)

UNSURE_FILE = "review.json"
"""In the state folder: questions answered "not sure", with the faces their sides had,
and the faces of the parts the last listed questions asked about."""

Answer = Literal["yes", "no", "unsure"]
V = TypeVar("V")
ANSWERS: tuple[Answer, ...] = ("yes", "no", "unsure")


def _read_state(state_dir: Path) -> dict:
    try:
        data = json.loads((Path(state_dir) / UNSURE_FILE).read_text("utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return data
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        log.warning("review_state_unreadable", path=str(Path(state_dir) / UNSURE_FILE),
                    error=str(e))
        return {}


def _write_state(state_dir: Path, data: dict) -> None:
    atomic_write(Path(state_dir) / UNSURE_FILE,
                 json.dumps(data, indent=1, sort_keys=True).encode())


def _section(data: dict, key: str, value: Callable[[object], V]) -> dict[str, V]:
    """One table of the review state, each value converted; empty if it is malformed."""
    try:
        return {str(k): value(v) for k, v in data.get(key, {}).items()}
    except (ValueError, AttributeError, TypeError) as e:
        log.warning("review_state_unreadable", table=key, error=str(e))
        return {}


def _face_ids(v: object) -> list[int]:
    return [int(f) for f in v]  # type: ignore[attr-defined]


def _count(v: object) -> int:
    return int(v)  # type: ignore[call-overload]


def read_unsure(state_dir: Path) -> dict[str, int]:
    """Question id -> the faces both sides had when it was answered "not sure"."""
    return _section(_read_state(state_dir), "unsure", _count)


def read_parts(state_dir: Path) -> dict[str, list[int]]:
    """Part question id -> the part's face ids (most central first)."""
    return _section(_read_state(state_dir), "parts", _face_ids)


def remember_parts(state_dir: Path, parts: dict[str, Sequence[int]]) -> None:
    """Keep the faces of the parts just listed, for their answers (replacing the last
    listing's: a part is re-found from the store at every listing)."""
    data = _read_state(state_dir)
    wanted = {k: [int(f) for f in v] for k, v in sorted(parts.items())}
    if data.get("parts", {}) == wanted:
        return
    data["parts"] = wanted
    _write_state(state_dir, data)


def _holder(labels: Labels, a: str, b: str) -> tuple[int, str]:
    """Which person's entry records an answer about ``a`` and ``b``, and the other one:
    a named person's first, then one with an entry, else the first."""
    people = [r for r in (a, b) if (parse_ref(r) or ("", 0))[0] == "person"]

    def rank(ref: str) -> tuple[int, int]:
        number = parse_ref(ref)[1]  # type: ignore[index]
        lab = labels.people.get(number)
        return (0 if lab and lab.name else 1 if lab else 2, number)

    holder = min(people, key=rank)
    return parse_ref(holder)[1], (b if holder == a else a)  # type: ignore[index]


def side_sizes(store: Store, refs: Sequence[str]) -> int:
    """Faces the references stand for now (a person's faces, 1 for a face)."""
    counts = {p.id: p.face_count for p in store.people()}
    total = 0
    for r in refs:
        kind, number = parse_ref(r) or ("part", 0)
        total += counts.get(number, 0) if kind == "person" else 1
    return total


def record_answer(labels_file: Path, state_dir: Path, labels: Labels, qid: str,
                  answer: str, store: Store | None = None,
                  expected_digest: str | None = None) -> naming.LabelsEdit | None:
    """Record one answer; returns the labels.toml edit ("not sure" edits nothing).

    ``expected_digest``: refuse (:class:`daemon.people.naming.LabelsConflict`) if labels.toml
    is no longer the file the question was shown from.

    Raises :class:`daemon.people.labels.LabelsError` for a malformed id and
    :class:`daemon.people.naming.NamingError` for an unknown answer.
    """
    a, b = parse_question_id(qid)
    if answer not in ANSWERS:
        raise naming.NamingError(f"answer yes, no or unsure, not {answer!r}")
    part = parse_part(b)
    data = _read_state(state_dir)  # once: an answer must be quick
    members = (_section(data, "parts", _face_ids).get(f"{a}+{b}", [part])
               if part is not None else [])
    if answer == "unsure":
        unsure = _section(data, "unsure", _count)
        # (a part's faces are its person's: the person's count is both sides')
        refs = (a,) if part is not None else (a, b)
        unsure[f"{a}+{b}"] = side_sizes(store, refs) if store is not None else 0
        _write_state(state_dir, {**data, "unsure": unsure})
        return None
    if part is not None:  # a part: every face of it, or (a "yes") the faces shown
        faces = members if answer == "no" else members[:SHOWN]
        return naming.answer(labels_file, parse_ref(a)[1],  # type: ignore[index]
                             [f"face-{f}" for f in faces], same=answer == "yes",
                             expected_digest=expected_digest)
    holder, other = _holder(labels, a, b)
    return naming.answer(labels_file, holder, other, same=answer == "yes",
                         expected_digest=expected_digest)
