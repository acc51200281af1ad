"""Recording an answer: "yes" / "no" into labels.toml, "not sure" into the state folder.

"yes" and "no" go into a person's ``same_as`` / ``not`` list through
:func:`daemon.people.naming.answer`, the one editor of labels.toml. "Not sure" is no knowledge
about the people, so it stays out of the user's file: ``state/review.json`` keeps it with
the faces both sides had, only so that the question comes back when new photos add some.
Light on purpose (no clustering code): ``facecluster review answer`` must be quick.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import structlog

from daemon.fsutil import atomic_write
from daemon.people import naming
from daemon.people.labels import Labels, parse_ref
from daemon.review.ids import parse_question_id

if TYPE_CHECKING:
    from daemon.store import Store  # numpy and sqlite: not for a "yes" or "no"

log = structlog.get_logger(__name__)

UNSURE_FILE = "review.json"
"""In the state folder: questions answered "not sure", with the faces their sides had."""

Answer = Literal["yes", "no", "unsure"]
ANSWERS: tuple[Answer, ...] = ("yes", "no", "unsure")


def read_unsure(state_dir: Path) -> dict[str, int]:
    """Question id -> the faces both sides had when it was answered "not sure"."""
    try:
        data = json.loads((Path(state_dir) / UNSURE_FILE).read_text("utf-8"))
        return {str(k): int(v) for k, v in data.get("unsure", {}).items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, AttributeError, TypeError) as e:
        log.warning("review_state_unreadable", path=str(Path(state_dir) / UNSURE_FILE),
                    error=str(e))
        return {}


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
        kind, number = parse_ref(r)  # type: ignore[misc]
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
    if answer == "unsure":
        unsure = read_unsure(state_dir)
        unsure[f"{a}+{b}"] = side_sizes(store, (a, b)) if store is not None else 0
        atomic_write(Path(state_dir) / UNSURE_FILE,
                     json.dumps({"unsure": unsure}, indent=1, sort_keys=True).encode())
        return None
    holder, other = _holder(labels, a, b)
    return naming.answer(labels_file, holder, other, same=answer == "yes",
                         expected_digest=expected_digest)
